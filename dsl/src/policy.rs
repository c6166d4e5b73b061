//! Policies of a program, and their static enforcement: the actions each
//! agent performs are derived from its code (through the agents it calls,
//! which inherit the caller's policies) and decided before anything runs.
//! `docs/POLICY.md` gives the semantics.

use std::collections::{BTreeMap, HashMap};

use symbiont_ir::{
    Attributes, CmpOp, CompiledPolicies, Condition, Effect, Lane, Namespace, Policy, PolicyValue,
    split_attribute, unit_seconds,
};

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};

/// A literal as a policy value: strings, numbers, booleans, negative
/// numbers, durations (`30.days`, as seconds).
fn literal(e: &Expr) -> Option<PolicyValue> {
    Some(match &e.kind {
        ExprKind::Str(s) => PolicyValue::Str(s.clone()),
        ExprKind::Int(i) => PolicyValue::Num(*i as f64),
        ExprKind::Float(f) => PolicyValue::Num(*f),
        ExprKind::Bool(b) => PolicyValue::Bool(*b),
        ExprKind::Unary {
            op: UnaryOp::Neg,
            operand,
        } => match literal(operand)? {
            PolicyValue::Num(n) => PolicyValue::Num(-n),
            _ => return None,
        },
        ExprKind::Member { object, property } => {
            let ExprKind::Int(n) = object.kind else {
                return None;
            };
            PolicyValue::Num(n as f64 * unit_seconds(&property.name)?)
        }
        ExprKind::Call { callee, args } if args.is_empty() => return literal(callee),
        _ => return None,
    })
}

fn cmp_op(op: BinaryOp) -> Option<CmpOp> {
    Some(match op {
        BinaryOp::Eq => CmpOp::Eq,
        BinaryOp::Ne => CmpOp::Ne,
        BinaryOp::Lt => CmpOp::Lt,
        BinaryOp::Gt => CmpOp::Gt,
        BinaryOp::Le => CmpOp::Le,
        BinaryOp::Ge => CmpOp::Ge,
        _ => return None,
    })
}

fn bad_condition(span: Span) -> Diagnostic {
    Diagnostic::error(
        Code::E0403,
        span,
        "a policy condition is `attribute op value` with a literal value",
    )
    .with_note(
        "e.g. `principal.clearance >= \"level_2\"`, `audit_trail = true`, `resource.retention_period: 30.days`",
    )
}

/// The attribute a condition names: `name`, or `namespace.key` with a
/// namespace of [`Namespace::ALL`]; an unknown namespace is refused.
fn attribute_name(name: &str, span: Span) -> Result<String, Diagnostic> {
    if !name.contains('.') {
        return Ok(name.to_owned());
    }
    match split_attribute(name) {
        (Some(Namespace::Record), key) if key != "class" => Err(Diagnostic::error(
            Code::E0403,
            span,
            format!("`{name}`: the record namespace has one attribute, `record.class`"),
        )),
        (Some(_), key) if !key.is_empty() && !key.contains('.') => Ok(name.to_owned()),
        _ => Err(Diagnostic::error(
            Code::E0403,
            span,
            format!(
                "`{name}` is not an attribute: qualified names are `principal.NAME`, `resource.NAME` or `record.class`"
            ),
        )),
    }
}

/// `a` or `a.b` as the attribute text it spells.
fn dotted(e: &Expr) -> Option<String> {
    match &e.kind {
        ExprKind::Ident(name) => Some(name.clone()),
        ExprKind::Member { object, property } => {
            Some(format!("{}.{}", dotted(object)?, property.name))
        }
        _ => None,
    }
}

/// The program's policies by name, or the conditions that are not in a
/// form the policy engine evaluates.
pub fn policies(program: &Program) -> Result<HashMap<String, Policy>, Vec<Diagnostic>> {
    let mut out = HashMap::new();
    let mut errors = Vec::new();
    for item in &program.items {
        let Item::Policy(p) = item else { continue };
        let mut policy = Policy {
            name: p.name.name.clone(),
            ..Policy::default()
        };
        for rule in &p.rules {
            match &rule.kind {
                PolicyRuleKind::Allow(actions) | PolicyRuleKind::Deny(actions) => {
                    let names = actions.iter().filter_map(|a| match &a.kind {
                        ExprKind::Str(s) => Some(s.clone()),
                        _ => None,
                    });
                    if matches!(rule.kind, PolicyRuleKind::Allow(_)) {
                        policy.allow.extend(names);
                    } else {
                        policy.deny.extend(names);
                    }
                }
                PolicyRuleKind::Require(conditions) => {
                    for c in conditions {
                        let parsed = match c {
                            Condition_::Assign { name, value, .. } => {
                                literal(value).map(|v| (name.name.clone(), CmpOp::Eq, v))
                            }
                            Condition_::Expr(Expr {
                                kind: ExprKind::Binary { op, lhs, rhs },
                                ..
                            }) => match (dotted(lhs), cmp_op(*op), literal(rhs)) {
                                (Some(attr), Some(op), Some(value)) => Some((attr, op, value)),
                                _ => None,
                            },
                            Condition_::Expr(_) => None,
                        };
                        match parsed.map(|(a, op, value)| {
                            attribute_name(&a, c.span()).map(|attribute| Condition {
                                attribute,
                                op,
                                value,
                            })
                        }) {
                            Some(Ok(c)) => policy.require.push(c),
                            Some(Err(d)) => errors.push(d),
                            None => errors.push(bad_condition(c.span())),
                        }
                    }
                }
                PolicyRuleKind::Conditions(entries) => {
                    for e in entries {
                        let op = e.op.map_or(Some(CmpOp::Eq), cmp_op);
                        match (
                            op,
                            literal(&e.value),
                            attribute_name(&e.key.name, e.key.span),
                        ) {
                            (_, _, Err(d)) => errors.push(d),
                            (Some(op), Some(value), Ok(attribute)) => {
                                policy.conditions.push(Condition {
                                    attribute,
                                    op,
                                    value,
                                })
                            }
                            _ => errors.push(bad_condition(e.span)),
                        }
                    }
                }
            }
        }
        out.insert(policy.name.clone(), policy);
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

use crate::ast::Condition as Condition_;

/// The attributes of the job context that this build guarantees: every
/// job writes a signed audit trail.
pub fn context_attributes() -> BTreeMap<String, PolicyValue> {
    BTreeMap::from([("audit_trail".to_owned(), PolicyValue::Bool(true))])
}

/// The `encryption` values a requirement may ask for that this build meets
/// by forcing the lane: `require: [encryption == "aes-256-gcm"]` raises
/// every record of the job below the confidential lane into it. (The
/// homomorphic lane's `"homomorphic"` is not among them until it exists.)
pub const FORCEABLE_ENCRYPTION: &[(&str, Lane)] = &[("aes-256-gcm", Lane::AesGcm)];

/// The attribute such requirements name.
pub const ENCRYPTION: &str = "encryption";

/// The lane `policies` force by their `encryption` requirements, if any
/// (the strongest, when several).
pub fn forced_lane<'p>(policies: impl IntoIterator<Item = &'p Policy>) -> Option<Lane> {
    policies
        .into_iter()
        .flat_map(|p| &p.require)
        .filter(|c| c.names_resource(ENCRYPTION) && c.op == CmpOp::Eq)
        .filter_map(|c| match &c.value {
            PolicyValue::Str(v) => FORCEABLE_ENCRYPTION
                .iter()
                .find(|(name, _)| name == v)
                .map(|(_, lane)| *lane),
            _ => None,
        })
        .max()
}

/// The lane every record of a job of agent `entry` is raised to, from the
/// requirements of the policies over its actions.
pub fn job_forced_lane(program: &Program, entry: &str) -> Option<Lane> {
    let defined = policies(program).ok()?;
    let names: std::collections::BTreeSet<String> = actions_of(program, entry)
        .into_iter()
        .flat_map(|a| a.policies)
        .collect();
    forced_lane(names.iter().filter_map(|n| defined.get(n)))
}

/// The attribute a policy names to require a sandbox tier of the job's
/// compute stages: `require: [tier >= 2]`.
pub const TIER: &str = "tier";

/// The tiers `policies` require, from their `tier >= N` and `tier > N`
/// requirements (the ones this build meets by raising stages; `==`, `<`
/// and `<=` it does not meet), with the policy each comes from.
pub fn required_tiers<'p>(policies: impl IntoIterator<Item = &'p Policy>) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    for p in policies {
        for c in p.require.iter().filter(|c| c.names_resource(TIER)) {
            let PolicyValue::Num(n) = c.value else {
                continue;
            };
            let least = match c.op {
                CmpOp::Ge => n.ceil(),
                CmpOp::Gt => n.floor() + 1.0,
                _ => continue,
            };
            if (0.0..=3.0).contains(&least) {
                out.push((
                    least as u8,
                    format!("policy `{}`: require tier {} {n}", p.name, c.op.symbol()),
                ));
            }
        }
    }
    out
}

/// The tiers a job of `entry` must run its compute stages in at least:
/// the policies over its actions ([`required_tiers`]) and the agent's own
/// `with sandbox = "..."`.
pub fn job_required_tiers(program: &Program, entry: &Agent) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    if let Ok(defined) = policies(program) {
        let names: std::collections::BTreeSet<String> = actions_of(program, &entry.name.name)
            .into_iter()
            .flat_map(|a| a.policies)
            .collect();
        out.extend(required_tiers(names.iter().filter_map(|n| defined.get(n))));
    }
    for m in &entry.metadata {
        if let MetaEntry::Pair { key, value, .. } = m
            && key.name == "sandbox"
            && let ExprKind::Str(name) = &value.kind
            && let Some(tier) = symbiont_ir::risk::tier_of_sandbox_name(name)
        {
            out.push((
                tier,
                format!("agent `{}`: with sandbox = \"{name}\"", entry.name.name),
            ));
        }
    }
    out
}

/// [`context_attributes`] of a job whose records are raised to `lane`:
/// `encryption` is then that lane's name in [`FORCEABLE_ENCRYPTION`].
pub fn context_with_lane(lane: Option<Lane>) -> BTreeMap<String, PolicyValue> {
    let mut c = context_attributes();
    if let Some((name, _)) = lane.and_then(|l| FORCEABLE_ENCRYPTION.iter().find(|(_, f)| *f == l)) {
        c.insert(ENCRYPTION.to_owned(), PolicyValue::Str((*name).to_owned()));
    }
    c
}

/// The `tier` attribute of a job whose compute stages are raised to meet
/// `required` (none when nothing is required).
pub fn context_with_tiers(required: &[(u8, String)]) -> BTreeMap<String, PolicyValue> {
    required
        .iter()
        .map(|(t, _)| *t)
        .max()
        .map(|t| (TIER.to_owned(), PolicyValue::Num(f64::from(t))))
        .into_iter()
        .collect()
}

/// One action an agent performs, where, under which policies.
#[derive(Clone, Debug, PartialEq)]
pub struct Action {
    /// `read`, `analyze`, `aggregate`, `export`, `persist`, `share`.
    pub name: &'static str,
    /// The code that performs it.
    pub span: Span,
    /// The agent it is performed in.
    pub agent: String,
    /// The policies in effect there, in precedence order (callers' first).
    pub policies: Vec<String>,
}

/// Every action of every agent, with the policies in effect, following
/// calls: an agent called by another inherits the caller's policies.
pub fn actions(program: &Program) -> Vec<Action> {
    actions_from(program, None)
}

/// The actions a job of agent `entry` performs: its own and those of the
/// agents it calls (its classifier included).
pub fn actions_of(program: &Program, entry: &str) -> Vec<Action> {
    actions_from(program, Some(entry))
}

fn actions_from(program: &Program, entry: Option<&str>) -> Vec<Action> {
    let agents: HashMap<&str, &Agent> = program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Agent(a) => Some((a.name.name.as_str(), a)),
            _ => None,
        })
        .collect();
    let mut out = Vec::new();
    for agent in agents.values() {
        if entry.is_some_and(|e| e != agent.name.name) {
            continue;
        }
        let mut stack = vec![agent.name.name.clone()];
        walk_agent(agent, &[], &agents, &mut stack, &mut out);
    }
    for action in &mut out {
        action.policies = with_ancestors(program, &action.policies);
    }
    out.sort_by_key(|a| (a.span.start, a.policies.len()));
    out.dedup();
    out
}

/// The policies `names` (all of the program's, in file order, when none
/// are named) with their ancestors, in precedence order, for a decision;
/// `Err` names a policy the program does not define.
pub fn policies_named(
    program: &Program,
    defined: &HashMap<String, Policy>,
    names: &[String],
) -> Result<Vec<Policy>, String> {
    let all: Vec<String> = program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Policy(p) => Some(p.name.name.clone()),
            _ => None,
        })
        .collect();
    let order = if names.is_empty() { &all[..] } else { names };
    with_ancestors(program, order)
        .iter()
        .map(|n| defined.get(n).cloned().ok_or_else(|| n.clone()))
        .collect()
}

/// `names` with the policies each extends before it (ancestors first, in
/// the order written), each once: the precedence order of `docs/POLICY.md`.
pub fn with_ancestors(program: &Program, names: &[String]) -> Vec<String> {
    let parents: HashMap<&str, Vec<&str>> = program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Policy(p) => Some((
                p.name.name.as_str(),
                p.extends.iter().map(|e| e.name.as_str()).collect(),
            )),
            _ => None,
        })
        .collect();
    fn visit<'a>(
        name: &'a str,
        parents: &HashMap<&str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        out: &mut Vec<String>,
    ) {
        if path.contains(&name) || out.iter().any(|o| o == name) {
            return;
        }
        path.push(name);
        for parent in parents.get(name).into_iter().flatten() {
            visit(parent, parents, path, out);
        }
        path.pop();
        out.push(name.to_owned());
    }
    let mut out = Vec::new();
    for name in names {
        visit(name, &parents, &mut Vec::new(), &mut out);
    }
    out
}

fn policy_names(entries: &[MetaEntry]) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| match e {
            MetaEntry::Policy { policies, .. } => Some(policies),
            _ => None,
        })
        .flatten()
        .filter_map(|p| match &p.kind {
            ExprKind::Ident(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn walk_agent<'p>(
    agent: &'p Agent,
    inherited: &[String],
    agents: &HashMap<&str, &'p Agent>,
    stack: &mut Vec<String>,
    out: &mut Vec<Action>,
) {
    let mut policies = inherited.to_vec();
    policies.extend(policy_names(&agent.metadata));
    let mut w = Walker {
        agent: &agent.name.name,
        agents,
        stack,
        out,
    };
    for p in agent.params.iter().flatten() {
        if matches!(&p.ty.kind, TypeKind::Generic { name, .. } if name.name == "Stream") {
            w.act("read", p.span, &policies);
        }
    }
    // The classifier runs on the agent's records, under its policies.
    for entry in &agent.metadata {
        if let MetaEntry::Pair { key, value, .. } = entry
            && key.name == "classifier"
            && let ExprKind::Str(name) = &value.kind
        {
            w.call(name, &policies);
        }
    }
    w.block(&agent.body, &policies);
}

struct Walker<'a, 'p> {
    agent: &'a str,
    agents: &'a HashMap<&'a str, &'p Agent>,
    stack: &'a mut Vec<String>,
    out: &'a mut Vec<Action>,
}

impl Walker<'_, '_> {
    fn act(&mut self, name: &'static str, span: Span, policies: &[String]) {
        self.out.push(Action {
            name,
            span,
            agent: self.agent.to_owned(),
            policies: policies.to_vec(),
        });
    }

    fn call(&mut self, callee: &str, policies: &[String]) {
        let Some(agent) = self.agents.get(callee).copied() else {
            return;
        };
        if self.stack.iter().any(|s| s == callee) {
            return;
        }
        self.stack.push(callee.to_owned());
        walk_agent(agent, policies, self.agents, self.stack, self.out);
        self.stack.pop();
    }

    fn block(&mut self, block: &Block, policies: &[String]) {
        for stmt in &block.stmts {
            self.stmt(stmt, policies);
        }
    }

    fn stmt(&mut self, stmt: &Stmt, policies: &[String]) {
        match &stmt.kind {
            StmtKind::Let { value, .. } | StmtKind::Destructure { value, .. } => {
                self.expr(value, policies)
            }
            StmtKind::Assign { target, value } => {
                self.expr(target, policies);
                self.expr(value, policies);
            }
            StmtKind::Return(v) => {
                if let Some(v) = v {
                    self.expr(v, policies);
                }
            }
            StmtKind::If {
                cond,
                then,
                otherwise,
            } => {
                self.expr(cond, policies);
                self.block(then, policies);
                match otherwise.as_deref() {
                    Some(Else::Block(b)) => self.block(b, policies),
                    Some(Else::If(s)) => self.stmt(s, policies),
                    None => {}
                }
            }
            StmtKind::While { cond, body } => {
                self.expr(cond, policies);
                self.block(body, policies);
            }
            StmtKind::For { iterable, body, .. } => {
                self.expr(iterable, policies);
                self.block(body, policies);
            }
            StmtKind::Try { body, handler, .. } => {
                self.block(body, policies);
                self.block(handler, policies);
            }
            StmtKind::With { metadata, body } => {
                let mut inner = policies.to_vec();
                inner.extend(policy_names(metadata));
                self.block(body, &inner);
            }
            StmtKind::Block(b) => self.block(b, policies),
            StmtKind::Expr(e) => self.expr(e, policies),
        }
    }

    fn expr(&mut self, e: &Expr, policies: &[String]) {
        match &e.kind {
            ExprKind::Call { callee, args } => {
                match &callee.kind {
                    ExprKind::Ident(f) => match f.as_str() {
                        "export" | "persist" | "share" => {
                            let name = match f.as_str() {
                                "export" => "export",
                                "persist" => "persist",
                                _ => "share",
                            };
                            self.act(name, e.span, policies);
                        }
                        "count" | "sum" | "avg" | "min" | "max" => {
                            self.act("aggregate", e.span, policies)
                        }
                        other => self.call(other, policies),
                    },
                    ExprKind::Member { object, property } => {
                        if matches!(
                            property.name.as_str(),
                            "filter" | "map" | "group_by" | "reduce"
                        ) {
                            self.act("analyze", e.span, policies);
                        }
                        self.expr(object, policies);
                    }
                    _ => self.expr(callee, policies),
                }
                for a in args {
                    self.expr(a.value(), policies);
                }
            }
            ExprKind::AgentCall { agent, args, .. } => {
                self.call(&agent.name, policies);
                for a in args {
                    self.expr(a.value(), policies);
                }
            }
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs, policies);
                self.expr(rhs, policies);
            }
            ExprKind::Unary { operand, .. } => self.expr(operand, policies),
            ExprKind::Member { object, .. } => self.expr(object, policies),
            ExprKind::Array(items) => items.iter().for_each(|i| self.expr(i, policies)),
            ExprKind::Object(fields) | ExprKind::Struct { fields, .. } => {
                fields.iter().for_each(|f| self.expr(&f.value, policies))
            }
            ExprKind::Lambda { body, .. } => match body.as_ref() {
                LambdaBody::Expr(b) => self.expr(b, policies),
                LambdaBody::Block(b) => self.block(b, policies),
            },
            _ => {}
        }
    }
}

/// Static enforcement: every action the program performs, decided under
/// the policies in effect where it is performed, with the job context this
/// build guarantees. Conditions on principals and datasets are left to run
/// time; allow and deny rules and requirements are decided here.
pub fn check_policies(program: &Program) -> Vec<Diagnostic> {
    check_policies_with(program, &[], "")
}

/// [`check_policies`] with `dataset` policies applying to every action
/// first (the dataset's own, read from `origin`): a denial by one of them
/// names it and its file.
pub fn check_policies_with(program: &Program, dataset: &[Policy], origin: &str) -> Vec<Diagnostic> {
    let defined = match policies(program) {
        Ok(p) => p,
        Err(errors) => return errors,
    };
    let spans = policy_spans(program);
    let mut diagnostics: Vec<Diagnostic> = actions(program)
        .iter()
        .filter_map(|action| decide_statically(action, &defined, &spans, dataset, origin))
        .collect();
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    diagnostics.dedup_by_key(|d| (d.span.start, d.code));
    diagnostics
}

/// The action `persist` of a job of agent `entry` that writes its dataset
/// out (`symbi run --persist-encrypted`): performed where the agent reads
/// its input, under the policies in effect there and `dataset`'s, decided
/// like every other action (a policy's `deny: ["persist"]` refuses it).
pub fn check_persist(
    program: &Program,
    entry: &str,
    dataset: &[Policy],
    origin: &str,
) -> Vec<Diagnostic> {
    let defined = match policies(program) {
        Ok(p) => p,
        Err(errors) => return errors,
    };
    let read = actions_of(program, entry)
        .into_iter()
        .find(|a| a.agent == entry && a.name == "read");
    let Some(read) = read else {
        return Vec::new();
    };
    let persist = Action {
        name: "persist",
        ..read
    };
    decide_statically(&persist, &defined, &policy_spans(program), dataset, origin)
        .into_iter()
        .collect()
}

/// Where each of the program's policies is defined.
fn policy_spans(program: &Program) -> HashMap<&str, Span> {
    program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Policy(p) => Some((p.name.name.as_str(), p.name.span)),
            _ => None,
        })
        .collect()
}

/// One action decided statically ([`check_policies_with`]): its
/// diagnostic, or `None` when it is allowed.
fn decide_statically(
    action: &Action,
    defined: &HashMap<String, Policy>,
    spans: &HashMap<&str, Span>,
    dataset: &[Policy],
    origin: &str,
) -> Option<Diagnostic> {
    let none = BTreeMap::new();
    // Runtime conditions are not decided statically.
    let applicable: Vec<Policy> = dataset
        .iter()
        .chain(action.policies.iter().filter_map(|n| defined.get(n)))
        .map(|p| Policy {
            conditions: Vec::new(),
            // Requirements on the principal and the records are met, or
            // not, at run time.
            require: p
                .require
                .iter()
                .filter(|c| {
                    !matches!(
                        split_attribute(&c.attribute).0,
                        Some(Namespace::Principal | Namespace::Record)
                    )
                })
                .cloned()
                .collect(),
            ..p.clone()
        })
        .collect();
    // Tiers are met by raising stages, never by lowering them: a
    // requirement that caps the tier cannot be guaranteed.
    if let Some((policy, c)) = applicable.iter().find_map(|p| {
        p.require
            .iter()
            .find(|c| c.names_resource(TIER) && !matches!(c.op, CmpOp::Ge | CmpOp::Gt))
            .map(|c| (p, c))
    }) {
        return Some(
            Diagnostic::error(
                Code::E0402,
                action.span,
                format!(
                    "policy `{}` requires `tier {} {}`; this build meets tier requirements \
                     by raising stages (`tier >= N`), so `{}` in `{}` cannot run",
                    policy.name,
                    c.op.symbol(),
                    c.value,
                    action.name,
                    action.agent
                ),
            )
            .with_note("the risk table may put a stage higher (docs/SANDBOX.md)"),
        );
    }
    let Ok(compiled) = CompiledPolicies::compile(&applicable) else {
        return None;
    };
    // A requirement the engine meets by forcing the lane, or by
    // raising the compute stages' tier, is met.
    let mut context = match forced_lane(&applicable) {
        Some(lane) => context_with_lane(Some(lane)),
        None => context_attributes(),
    };
    context.extend(context_with_tiers(&required_tiers(&applicable)));
    let decision = compiled.decide(
        action.name,
        &Attributes {
            principal: &none,
            resource: &context,
            asserted: &none,
            record: &none,
        },
    );
    if decision.effect == Effect::Allow {
        return None;
    }
    let first = &decision.reasons[0];
    let (code, message) = if first.rule == "require" {
        (
            Code::E0402,
            format!(
                "policy `{}` {}; this build cannot meet it, so `{}` in `{}` cannot run",
                first.policy, first.detail, action.name, action.agent
            ),
        )
    } else {
        (
            Code::E0401,
            format!(
                "`{}` is denied by the `{}` rule of policy `{}`",
                action.name, first.rule, first.policy
            ),
        )
    };
    let mut d = Diagnostic::error(code, action.span, message).with_label(format!(
        "this performs `{}` in agent `{}`",
        action.name, action.agent
    ));
    if let Some(span) = spans.get(first.policy.as_str()) {
        d = d.with_secondary(*span, "the policy");
    } else if dataset.iter().any(|p| p.name == first.policy) {
        d = d.with_note(format!(
            "policy `{}` is carried by the dataset: {origin}",
            first.policy
        ));
    }
    for r in &decision.reasons[1..] {
        d = d.with_note(format!(
            "also: policy `{}`, `{}`: {}",
            r.policy, r.rule, r.detail
        ));
    }
    for c in &decision.conflicts {
        d = d.with_note(format!("conflict: {c}"));
    }
    Some(d)
}
