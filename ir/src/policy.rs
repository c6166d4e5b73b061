//! Policies compiled for fast decisions, and the decision procedure that
//! `docs/POLICY.md` specifies.
//!
//! A decision is asked for one action under a list of applicable policies,
//! in precedence order, with the attributes of the principal and of the
//! resource (dataset and job context). It is *allow* only if every
//! applicable policy allows the action, denies it in no rule, and has all
//! its conditions and requirements met; otherwise *deny*, with every rule
//! that denied it (the first, in precedence order, is the reason shown).
//! Actions are interned as bits, so a decision is a few mask tests plus the
//! conditions' comparisons.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::Serialize;

/// A value in a policy condition or attribute.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PolicyValue {
    /// A string.
    Str(String),
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
}

/// Parses `KEY=VALUE` attributes (a principal's, a resource's), each
/// value with [`PolicyValue::parse`]; the first malformed pair on error.
pub fn parse_attributes<S: AsRef<str>>(
    pairs: &[S],
) -> Result<BTreeMap<String, PolicyValue>, String> {
    pairs
        .iter()
        .map(|p| match p.as_ref().split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), PolicyValue::parse(v))),
            _ => Err(p.as_ref().to_owned()),
        })
        .collect()
}

impl PolicyValue {
    /// Parses an attribute given on the command line: `true`/`false`, a
    /// number, or else a string.
    pub fn parse(text: &str) -> PolicyValue {
        match text {
            "true" => PolicyValue::Bool(true),
            "false" => PolicyValue::Bool(false),
            _ => {
                // A duration as the DSL writes it: `30.days` is seconds.
                let duration = text
                    .rsplit_once('.')
                    .and_then(|(n, unit)| Some(n.parse::<f64>().ok()? * unit_seconds(unit)?));
                match duration {
                    Some(seconds) => PolicyValue::Num(seconds),
                    None => text
                        .parse::<f64>()
                        .map(PolicyValue::Num)
                        .unwrap_or_else(|_| PolicyValue::Str(text.to_owned())),
                }
            }
        }
    }

    fn compare(&self, other: &PolicyValue) -> Option<Ordering> {
        match (self, other) {
            (PolicyValue::Str(a), PolicyValue::Str(b)) => Some(a.cmp(b)),
            (PolicyValue::Num(a), PolicyValue::Num(b)) => a.partial_cmp(b),
            (PolicyValue::Bool(a), PolicyValue::Bool(b)) => Some(a.cmp(b)),
            _ => None,
        }
    }
}

impl std::fmt::Display for PolicyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyValue::Str(s) => write!(f, "{s:?}"),
            PolicyValue::Num(n) => write!(f, "{n}"),
            PolicyValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// Seconds in a duration unit (`weeks`, `days`, `hours`, `minutes`,
/// `seconds`), as in `30.days`.
pub fn unit_seconds(unit: &str) -> Option<f64> {
    Some(match unit {
        "weeks" => 604_800.0,
        "days" => 86_400.0,
        "hours" => 3_600.0,
        "minutes" => 60.0,
        "seconds" => 1.0,
        _ => return None,
    })
}

/// A comparison in a condition.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl CmpOp {
    /// The operator as written.
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            CmpOp::Eq => ordering == Ordering::Equal,
            CmpOp::Ne => ordering != Ordering::Equal,
            CmpOp::Lt => ordering == Ordering::Less,
            CmpOp::Gt => ordering == Ordering::Greater,
            CmpOp::Le => ordering != Ordering::Greater,
            CmpOp::Ge => ordering != Ordering::Less,
        }
    }
}

/// `attribute op value`: a condition (`conditions: {...}`) or a requirement
/// (`require: [...]`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Condition {
    /// The attribute of the principal or the resource.
    pub attribute: String,
    /// The comparison.
    pub op: CmpOp,
    /// The value compared against.
    pub value: PolicyValue,
}

impl Condition {
    fn holds(&self, attributes: &Attributes<'_>) -> bool {
        attributes
            .get(&self.attribute)
            .and_then(|v| v.compare(&self.value))
            .is_some_and(|o| self.op.holds(o))
    }

    /// Whether it is about the records seen (`record.*`, or the legacy
    /// `data_classification`) rather than the job.
    pub fn is_on_records(&self) -> bool {
        matches!(
            split_attribute(&self.attribute),
            (Some(Namespace::Record), _) | (None, LEGACY_RECORD_CLASS)
        )
    }

    /// Whether it names the resource attribute `key`, qualified or not.
    pub fn names_resource(&self, key: &str) -> bool {
        matches!(split_attribute(&self.attribute), (Some(Namespace::Resource) | None, k) if k == key)
    }

    fn describe(&self) -> String {
        format!("{} {} {}", self.attribute, self.op.symbol(), self.value)
    }
}

/// A policy as the DSL wrote it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// `allow: [...]`
    pub allow: Vec<String>,
    /// `deny: [...]`
    pub deny: Vec<String>,
    /// `require: [...]`
    pub require: Vec<Condition>,
    /// `conditions: {...}`
    pub conditions: Vec<Condition>,
}

/// The namespaces an attribute lives in. A condition names one as
/// `principal.role`, `resource.retention_period` or `record.class`; what
/// the principal asserts can never stand for the data's attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Namespace {
    /// Who asks: a signed principal credential's attributes.
    Principal,
    /// What is acted on: the dataset's metadata and the job's context
    /// (`audit_trail`, `encryption`, `tier`).
    Resource,
    /// Each record seen: `class`, as the `@classifier` gave it.
    Record,
}

impl Namespace {
    /// Every namespace, as written before the dot.
    pub const ALL: [(&'static str, Namespace); 3] = [
        ("principal", Namespace::Principal),
        ("resource", Namespace::Resource),
        ("record", Namespace::Record),
    ];

    /// The namespace a prefix names.
    pub fn parse(prefix: &str) -> Option<Namespace> {
        Namespace::ALL
            .iter()
            .find(|(p, _)| *p == prefix)
            .map(|(_, n)| *n)
    }
}

/// The legacy, unqualified name of `record.class`.
pub const LEGACY_RECORD_CLASS: &str = "data_classification";

/// An attribute as a condition names it: `(Some(namespace), key)` for
/// `namespace.key`, `(None, name)` for an unqualified name (an unknown
/// prefix is not a namespace: `symbi check` refuses it).
pub fn split_attribute(name: &str) -> (Option<Namespace>, &str) {
    match name.split_once('.') {
        Some((prefix, key)) => match Namespace::parse(prefix) {
            Some(ns) => (Some(ns), key),
            None => (None, name),
        },
        None => (None, name),
    }
}

/// The job-context attributes the engine sets (`audit_trail`,
/// `encryption`, `tier`): nobody else may (a dataset's metadata and
/// `--resource` that name one are refused), and an unqualified name of one
/// is the resource's only.
pub const CONTEXT_ATTRIBUTES: [&str; 3] = ["audit_trail", "encryption", "tier"];

/// The principal attribute the engine sets: `true` only for a principal
/// from a signed credential.
pub const VERIFIED: &str = "verified";

/// The attributes a decision sees, each namespace apart.
///
/// A qualified name (`principal.k`, `resource.k`, `record.k`) is looked
/// up in its namespace only (`resource.k`: the dataset's metadata and the
/// job's context, then what the runner asserted). An unqualified name (the
/// spec's own examples) sees only what someone vouches for: the resource's
/// metadata and context, then a *verified* principal's attributes;
/// `data_classification` is `record.class`. So neither a principal nor the
/// runner's own word ever stands for the data's attributes, and the
/// runner's word is read only where a policy asks for it by name.
#[derive(Clone, Copy, Debug)]
pub struct Attributes<'a> {
    /// Who asks (`verified` is `true` for a signed credential).
    pub principal: &'a BTreeMap<String, PolicyValue>,
    /// What is acted on: the dataset's metadata and the job's context.
    pub resource: &'a BTreeMap<String, PolicyValue>,
    /// What the runner says of the resource beyond that (`--resource`).
    pub asserted: &'a BTreeMap<String, PolicyValue>,
    /// The record a decision is about (`class`), empty for the job's.
    pub record: &'a BTreeMap<String, PolicyValue>,
}

impl Attributes<'_> {
    fn get(&self, name: &str) -> Option<&PolicyValue> {
        let vouched = self.principal.get(VERIFIED) == Some(&PolicyValue::Bool(true));
        match split_attribute(name) {
            (Some(Namespace::Principal), k) => self.principal.get(k),
            (Some(Namespace::Resource), k) => self.resource.get(k).or_else(|| self.asserted.get(k)),
            (Some(Namespace::Record), k) => self.record.get(k),
            (None, LEGACY_RECORD_CLASS) => self.record.get("class"),
            (None, k) if CONTEXT_ATTRIBUTES.contains(&k) => self.resource.get(k),
            (None, k) => self
                .resource
                .get(k)
                .or_else(|| vouched.then(|| self.principal.get(k)).flatten()),
        }
    }
}

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The action may happen.
    Allow,
    /// It may not.
    Deny,
}

/// A rule that determined a decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// The policy.
    pub policy: String,
    /// The rule: `allow`, `deny`, `default deny`, `condition`, `require`.
    pub rule: String,
    /// What it says about this request.
    pub detail: String,
}

/// A decision and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The outcome.
    pub effect: Effect,
    /// For a denial, every rule that denied, in precedence order; for an
    /// allow, the rules that allowed.
    pub reasons: Vec<Reason>,
    /// Policies that disagree about the action (one allows, another
    /// denies): reported, and resolved by deny-overrides.
    pub conflicts: Vec<String>,
}

/// Policies compiled against an action vocabulary.
#[derive(Clone, Debug)]
pub struct CompiledPolicies {
    actions: Vec<String>,
    policies: Vec<Compiled>,
}

#[derive(Clone, Debug)]
struct Compiled {
    source: Policy,
    allow: u64,
    deny: u64,
}

/// More distinct actions than a decision mask holds.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policies name more than 64 distinct actions")]
pub struct TooManyActions;

impl CompiledPolicies {
    /// Compiles `policies`, in precedence order (first = highest).
    pub fn compile(policies: &[Policy]) -> Result<CompiledPolicies, TooManyActions> {
        let mut actions: Vec<String> = Vec::new();
        let bit = |a: &String, actions: &mut Vec<String>| -> Result<u64, TooManyActions> {
            let i = match actions.iter().position(|x| x == a) {
                Some(i) => i,
                None => {
                    actions.push(a.clone());
                    actions.len() - 1
                }
            };
            if i >= 64 {
                return Err(TooManyActions);
            }
            Ok(1u64 << i)
        };
        let mut compiled = Vec::with_capacity(policies.len());
        for p in policies {
            let mut allow = 0;
            for a in &p.allow {
                allow |= bit(a, &mut actions)?;
            }
            let mut deny = 0;
            for a in &p.deny {
                deny |= bit(a, &mut actions)?;
            }
            compiled.push(Compiled {
                source: p.clone(),
                allow,
                deny,
            });
        }
        Ok(CompiledPolicies {
            actions,
            policies: compiled,
        })
    }

    /// Whether no policy applies.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    fn mask(&self, action: &str) -> u64 {
        self.actions
            .iter()
            .position(|a| a == action)
            .map_or(0, |i| 1u64 << i)
    }

    /// The decision for `action`, without reasons (the fast path).
    pub fn allows(&self, action: &str, attributes: &Attributes<'_>) -> bool {
        let m = self.mask(action);
        self.policies.iter().all(|p| {
            p.allow & m != 0
                && p.deny & m == 0
                && p.source.conditions.iter().all(|c| c.holds(attributes))
                && p.source.require.iter().all(|c| c.holds(attributes))
        })
    }

    /// The decision for `action`, with the rules that determined it.
    pub fn decide(&self, action: &str, attributes: &Attributes<'_>) -> Decision {
        let m = self.mask(action);
        let mut denials = Vec::new();
        let mut allows = Vec::new();
        let (mut allowed_by, mut denied_by) = (Vec::new(), Vec::new());
        for p in &self.policies {
            let name = &p.source.name;
            let reason = |rule: &str, detail: String| Reason {
                policy: name.clone(),
                rule: rule.to_owned(),
                detail,
            };
            if p.deny & m != 0 {
                denials.push(reason("deny", format!("`{action}` is in the deny list")));
                denied_by.push(name.clone());
            } else if p.allow & m == 0 {
                denials.push(reason(
                    "default deny",
                    format!("`{action}` is not in the allow list, and what a policy does not allow it denies"),
                ));
            } else {
                allowed_by.push(name.clone());
                allows.push(reason("allow", format!("`{action}` is in the allow list")));
            }
            if p.allow & m != 0 && p.deny & m != 0 {
                denials.push(reason(
                    "conflict",
                    format!("`{action}` is both allowed and denied by this policy; deny overrides"),
                ));
            }
            for c in &p.source.conditions {
                if !c.holds(attributes) {
                    denials.push(reason("condition", unmet(c, attributes)));
                }
            }
            for c in &p.source.require {
                if !c.holds(attributes) {
                    denials.push(reason("require", unmet(c, attributes)));
                }
            }
        }
        let conflicts = if !allowed_by.is_empty() && !denied_by.is_empty() {
            vec![format!(
                "`{action}` is allowed by {} and denied by {}; deny overrides",
                allowed_by.join(", "),
                denied_by.join(", ")
            )]
        } else {
            Vec::new()
        };
        if denials.is_empty() {
            Decision {
                effect: Effect::Allow,
                reasons: if self.policies.is_empty() {
                    vec![Reason {
                        policy: String::new(),
                        rule: "no policy".into(),
                        detail: "no policy applies, so nothing is restricted".into(),
                    }]
                } else {
                    allows
                },
                conflicts,
            }
        } else {
            Decision {
                effect: Effect::Deny,
                reasons: denials,
                conflicts,
            }
        }
    }
}

fn unmet(c: &Condition, attributes: &Attributes<'_>) -> String {
    match attributes.get(&c.attribute) {
        None => format!(
            "requires {}, but `{}` is not known",
            c.describe(),
            c.attribute
        ),
        Some(v) => format!("requires {}, but `{}` is {v}", c.describe(), c.attribute),
    }
}
