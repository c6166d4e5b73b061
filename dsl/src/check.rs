//! Name resolution and type checking.
//!
//! [`check`] walks a parsed [`Program`] once per item and reports every
//! problem it finds; a type that cannot be known (after an error, or for a
//! value of unknown shape) is [`Ty::Unknown`], which is compatible with
//! everything, so one mistake yields one diagnostic rather than a cascade.
//! `docs/LANGUAGE.md` describes the rules; `docs/DIAGNOSTICS.md` the codes.

use std::collections::HashMap;
use std::fmt;

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};

/// The class names a `@classifier` agent may return.
pub const CLASS_NAMES: [&str; 3] = ["public", "confidential", "restricted"];

/// The built-in PII detectors, called as `pii.<name>(string) -> bool`.
pub const PII_DETECTORS: [&str; 5] = ["ssn", "email", "phone", "credit_card", "iban"];

/// The units of duration literals such as `30.days` or `24.hours()`.
const DURATION_UNITS: [&str; 5] = ["weeks", "days", "hours", "minutes", "seconds"];

/// The type of a value.
#[derive(Clone, Debug, PartialEq)]
pub enum Ty {
    /// 64-bit signed integer.
    Int,
    /// 64-bit float.
    Float,
    /// UTF-8 string.
    String,
    /// Boolean.
    Bool,
    /// Byte string.
    Bytes,
    /// A span of time (`30.days`).
    Duration,
    /// No value: what `export(...)` returns.
    Void,
    /// A struct defined in the program.
    Struct(String),
    /// An enum defined in the program (or an `enum { ... }` alias).
    Enum(String),
    /// An anonymous record: `{ field: T }` types and object literals.
    Record(Vec<(String, Ty)>),
    /// `Stream<T>`: the records of a dataset, in no particular order.
    Stream(Box<Ty>),
    /// `Array<T>`
    Array(Box<Ty>),
    /// `Map<K, V>`
    Map(Box<Ty>, Box<Ty>),
    /// What `stream.group_by(key)` returns: groups of `T` by key `K`.
    Grouped(Box<Ty>, Box<Ty>),
    /// One group, `g.key: K` and `g.values: Stream<T>`.
    Group(Box<Ty>, Box<Ty>),
    /// `(A, B) -> R`
    Function(Vec<Ty>, Box<Ty>),
    /// `agent<Capability>`
    Agent(String),
    /// A type parameter of a generic alias or struct.
    Param(String),
    /// Not known; compatible with everything.
    Unknown,
}

impl Ty {
    fn is_numeric(&self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Unknown)
    }

    /// The element type of a stream or array.
    fn element(&self) -> Option<Ty> {
        match self {
            Ty::Stream(t) | Ty::Array(t) => Some((**t).clone()),
            Ty::Unknown => Some(Ty::Unknown),
            _ => None,
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ty::Int => f.write_str("int"),
            Ty::Float => f.write_str("float"),
            Ty::String => f.write_str("string"),
            Ty::Bool => f.write_str("bool"),
            Ty::Bytes => f.write_str("bytes"),
            Ty::Duration => f.write_str("duration"),
            Ty::Void => f.write_str("no value"),
            Ty::Struct(n) | Ty::Enum(n) | Ty::Param(n) => f.write_str(n),
            Ty::Record(fields) => {
                f.write_str("{ ")?;
                for (i, (n, t)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{n}: {t}")?;
                }
                f.write_str(" }")
            }
            Ty::Stream(t) => write!(f, "Stream<{t}>"),
            Ty::Array(t) => write!(f, "Array<{t}>"),
            Ty::Map(k, v) => write!(f, "Map<{k}, {v}>"),
            Ty::Grouped(k, t) => write!(f, "Grouped<{k}, {t}>"),
            Ty::Group(k, t) => write!(f, "Group<{k}, {t}>"),
            Ty::Function(params, ret) => {
                f.write_str("(")?;
                for (i, p) in params.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{p}")?;
                }
                write!(f, ") -> {ret}")
            }
            Ty::Agent(c) => write!(f, "agent<{c}>"),
            Ty::Unknown => f.write_str("_"),
        }
    }
}

/// Whether a value of type `actual` may be used where `expected` is wanted.
/// An `int` widens to a `float`; a `Stream<T>` is collected into an
/// `Array<T>`.
fn compatible(expected: &Ty, actual: &Ty) -> bool {
    match (expected, actual) {
        (Ty::Unknown, _) | (_, Ty::Unknown) | (Ty::Param(_), _) | (_, Ty::Param(_)) => true,
        (Ty::Float, Ty::Int) => true,
        (Ty::Array(e), Ty::Array(a) | Ty::Stream(a)) | (Ty::Stream(e), Ty::Stream(a)) => {
            compatible(e, a)
        }
        (Ty::Map(ek, ev), Ty::Map(ak, av))
        | (Ty::Grouped(ek, ev), Ty::Grouped(ak, av))
        | (Ty::Group(ek, ev), Ty::Group(ak, av)) => compatible(ek, ak) && compatible(ev, av),
        (Ty::Record(e), Ty::Record(a)) => {
            e.len() == a.len()
                && e.iter()
                    .zip(a)
                    .all(|((en, et), (an, at))| en == an && compatible(et, at))
        }
        (Ty::Function(ep, er), Ty::Function(ap, ar)) => {
            ep.len() == ap.len()
                && ep.iter().zip(ap).all(|(e, a)| compatible(a, e))
                && compatible(er, ar)
        }
        (e, a) => e == a,
    }
}

/// Checks names and types in `program`, returning every problem found,
/// ordered by position.
pub fn check(program: &Program) -> Vec<Diagnostic> {
    let mut checker = Checker::new(program);
    checker.check_program(program);
    let mut diagnostics = checker.diagnostics;
    diagnostics.sort_by_key(|d| (d.span.start, d.span.end));
    diagnostics
}

/// The signature of a defined agent.
struct AgentSig {
    params: Vec<Ty>,
    ret: Ty,
    classifier: bool,
    span: Span,
}

struct Checker<'p> {
    structs: HashMap<&'p str, &'p StructDef>,
    /// Each struct's fields with their resolved types.
    struct_fields: HashMap<&'p str, Vec<(String, Ty)>>,
    enums: HashMap<&'p str, Vec<&'p str>>,
    aliases: HashMap<&'p str, &'p TypeAlias>,
    agents: HashMap<&'p str, AgentSig>,
    policies: HashMap<&'p str, Span>,
    /// Each policy's `extends` list.
    policy_parents: HashMap<&'p str, Vec<String>>,
    /// Lexical scopes of local names, innermost last.
    scopes: Vec<HashMap<String, Ty>>,
    /// Type parameters in scope while resolving a generic definition.
    type_params: Vec<String>,
    /// The current agent's declared return type and whether it classifies.
    ret: Option<(Ty, bool)>,
    /// Aliases being resolved, to stop `type A = B; type B = A;`.
    resolving: Vec<String>,
    diagnostics: Vec<Diagnostic>,
}

impl<'p> Checker<'p> {
    fn new(program: &'p Program) -> Checker<'p> {
        let mut checker = Checker {
            structs: HashMap::new(),
            struct_fields: HashMap::new(),
            enums: HashMap::new(),
            aliases: HashMap::new(),
            agents: HashMap::new(),
            policies: HashMap::new(),
            policy_parents: HashMap::new(),
            scopes: Vec::new(),
            type_params: Vec::new(),
            ret: None,
            resolving: Vec::new(),
            diagnostics: Vec::new(),
        };
        checker.collect(program);
        let structs: Vec<&'p StructDef> = checker.structs.values().copied().collect();
        for s in structs {
            checker.type_params = s.params.iter().map(|p| p.name.clone()).collect();
            let fields = s
                .fields
                .iter()
                .map(|f| (f.name.name.clone(), checker.resolve_quiet(&f.ty)))
                .collect();
            checker.struct_fields.insert(&s.name.name, fields);
        }
        checker.type_params.clear();
        checker
    }

    fn error(&mut self, code: Code, span: Span, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics
            .push(Diagnostic::error(code, span, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// Gathers top-level names, reporting duplicates.
    fn collect(&mut self, program: &'p Program) {
        let mut types: HashMap<&str, Span> = HashMap::new();
        let mut agents: HashMap<&str, Span> = HashMap::new();
        for item in &program.items {
            let (name, is_type) = match item {
                Item::Struct(s) => (&s.name, true),
                Item::Enum(e) => (&e.name, true),
                Item::TypeAlias(t) => (&t.name, true),
                Item::Agent(a) => (&a.name, false),
                Item::Policy(p) => (&p.name, false),
                Item::Import(_) => continue,
            };
            let first = if is_type {
                types.insert(&name.name, name.span)
            } else if let Item::Agent(_) = item {
                agents.insert(&name.name, name.span)
            } else {
                self.policies.get(name.name.as_str()).copied()
            };
            if let Some(first) = first {
                let what = match item {
                    Item::Agent(_) => "agent",
                    Item::Policy(_) => "policy",
                    _ => "type",
                };
                self.error(
                    Code::E0107,
                    name.span,
                    format!("the {what} `{}` is defined twice", name.name),
                )
                .with_secondary_mut(first, "first defined here");
                continue;
            }
            match item {
                Item::Struct(s) => {
                    self.structs.insert(&s.name.name, s);
                }
                Item::Enum(e) => {
                    self.enums.insert(
                        &e.name.name,
                        e.variants.iter().map(|v| v.name.as_str()).collect(),
                    );
                }
                Item::TypeAlias(t) => {
                    self.aliases.insert(&t.name.name, t);
                    if let TypeKind::Enum(variants) = &t.ty.kind {
                        self.enums.insert(
                            &t.name.name,
                            variants.iter().map(|v| v.name.as_str()).collect(),
                        );
                    }
                }
                Item::Policy(p) => {
                    self.policies.insert(&p.name.name, p.name.span);
                    self.policy_parents.insert(
                        &p.name.name,
                        p.extends.iter().map(|e| e.name.clone()).collect(),
                    );
                }
                Item::Agent(_) | Item::Import(_) => {}
            }
        }
        // Agent signatures need every type name, so they come second.
        for item in &program.items {
            if let Item::Agent(a) = item {
                if self.agents.contains_key(a.name.name.as_str()) {
                    continue;
                }
                let params = a
                    .params
                    .iter()
                    .flatten()
                    .map(|p| self.resolve_quiet(&p.ty))
                    .collect();
                let ret = a
                    .return_type
                    .as_ref()
                    .map_or(Ty::Void, |t| self.resolve_quiet(t));
                let sig = AgentSig {
                    params,
                    ret,
                    classifier: a.has_annotation("classifier"),
                    span: a.name.span,
                };
                self.agents.insert(&a.name.name, sig);
            }
        }
    }

    fn check_program(&mut self, program: &'p Program) {
        for item in &program.items {
            match item {
                Item::Import(_) => {}
                Item::Struct(s) => {
                    self.type_params = s.params.iter().map(|p| p.name.clone()).collect();
                    self.check_duplicates(s.fields.iter().map(|f| &f.name), "field");
                    for f in &s.fields {
                        self.resolve(&f.ty);
                    }
                    self.type_params.clear();
                }
                Item::Enum(e) => self.check_duplicates(e.variants.iter(), "variant"),
                Item::TypeAlias(t) => {
                    self.type_params = t.params.iter().map(|p| p.name.clone()).collect();
                    let ty = self.resolve(&t.ty);
                    self.type_params.clear();
                    match t.declared_range() {
                        Err((span, why)) => {
                            self.error(Code::E0214, span, why);
                        }
                        Ok(Some(_)) if ty != Ty::Int && ty != Ty::Unknown => {
                            let span = t.annotations.iter().find(|a| a.name.name == "range");
                            self.error(
                                Code::E0214,
                                span.map_or(t.span, |a| a.span),
                                format!("`range` bounds an `int`; `{}` is not one", t.name.name),
                            );
                        }
                        Ok(_) => {}
                    }
                }
                Item::Policy(p) => self.check_policy(p),
                Item::Agent(a) => self.check_agent(a),
            }
        }
    }

    fn check_duplicates<'a>(&mut self, names: impl Iterator<Item = &'a Ident>, what: &str) {
        let mut seen: HashMap<&str, Span> = HashMap::new();
        for name in names {
            if let Some(first) = seen.insert(&name.name, name.span) {
                self.error(
                    Code::E0108,
                    name.span,
                    format!("the {what} `{}` appears twice", name.name),
                )
                .with_secondary_mut(first, "first here");
            }
        }
    }

    // ------------------------------------------------------------- types

    /// Resolves a written type, reporting unknown names.
    fn resolve(&mut self, ty: &Type) -> Ty {
        self.resolve_inner(ty, true)
    }

    /// Resolves without reporting (used for signatures, which are reported
    /// when the agent itself is checked).
    fn resolve_quiet(&mut self, ty: &Type) -> Ty {
        self.resolve_inner(ty, false)
    }

    fn resolve_inner(&mut self, ty: &Type, report: bool) -> Ty {
        match &ty.kind {
            TypeKind::Primitive(p) => match p {
                Primitive::Int => Ty::Int,
                Primitive::Float => Ty::Float,
                Primitive::String => Ty::String,
                Primitive::Bool => Ty::Bool,
                Primitive::Bytes => Ty::Bytes,
            },
            TypeKind::Named(name) => self.resolve_name(name, report),
            TypeKind::Generic { name, args } => {
                let args: Vec<Ty> = args.iter().map(|a| self.resolve_inner(a, report)).collect();
                let arity = match name.name.as_str() {
                    "Stream" | "Array" => 1,
                    "Map" => 2,
                    _ => {
                        if let Some(alias) = self.aliases.get(name.name.as_str()) {
                            alias.params.len()
                        } else if let Some(s) = self.structs.get(name.name.as_str()) {
                            s.params.len()
                        } else {
                            if report {
                                self.error(
                                    Code::E0101,
                                    name.span,
                                    format!("unknown generic type `{}`", name.name),
                                )
                                .with_note_mut(
                                    "the built-in generic types are Stream<T>, Array<T> and Map<K, V>",
                                );
                            }
                            return Ty::Unknown;
                        }
                    }
                };
                if args.len() != arity {
                    if report {
                        self.error(
                            Code::E0201,
                            ty.span,
                            format!(
                                "`{}` takes {arity} type argument(s) but {} were given",
                                name.name,
                                args.len()
                            ),
                        );
                    }
                    return Ty::Unknown;
                }
                let mut args = args.into_iter();
                let mut next = || Box::new(args.next().expect("arity checked above"));
                match name.name.as_str() {
                    "Stream" => Ty::Stream(next()),
                    "Array" => Ty::Array(next()),
                    "Map" => Ty::Map(next(), next()),
                    other if self.structs.contains_key(other) => Ty::Struct(other.to_owned()),
                    // Generic aliases are checked structurally only where
                    // their parameters do not occur.
                    _ => self.resolve_name(name, false),
                }
            }
            TypeKind::Function { params, ret } => Ty::Function(
                params
                    .iter()
                    .map(|p| self.resolve_inner(p, report))
                    .collect(),
                Box::new(self.resolve_inner(ret, report)),
            ),
            TypeKind::Agent(cap) => Ty::Agent(cap.name.clone()),
            TypeKind::Record(fields) => {
                if report {
                    self.check_duplicates(fields.iter().map(|f| &f.name), "field");
                }
                Ty::Record(
                    fields
                        .iter()
                        .map(|f| (f.name.name.clone(), self.resolve_inner(&f.ty, report)))
                        .collect(),
                )
            }
            TypeKind::Enum(variants) => {
                if report {
                    self.check_duplicates(variants.iter(), "variant");
                }
                Ty::Unknown
            }
        }
    }

    fn resolve_name(&mut self, name: &Ident, report: bool) -> Ty {
        let n = name.name.as_str();
        if self.type_params.iter().any(|p| p == n) {
            return Ty::Param(n.to_owned());
        }
        if self.structs.contains_key(n) {
            return Ty::Struct(n.to_owned());
        }
        if self.enums.contains_key(n) {
            return Ty::Enum(n.to_owned());
        }
        if let Some(alias) = self.aliases.get(n).copied() {
            if self.resolving.iter().any(|r| r == n) {
                if report {
                    self.error(
                        Code::E0101,
                        name.span,
                        format!("the type alias `{n}` refers to itself"),
                    );
                }
                return Ty::Unknown;
            }
            if !alias.params.is_empty() {
                return Ty::Unknown;
            }
            self.resolving.push(n.to_owned());
            let ty = self.resolve_quiet(&alias.ty);
            self.resolving.pop();
            return ty;
        }
        if report {
            let known = matches!(n, "Stream" | "Array" | "Map");
            let d = self.error(Code::E0101, name.span, format!("unknown type `{n}`"));
            if known {
                d.notes
                    .push(format!("`{n}` needs type arguments, e.g. `{n}<int>`"));
            } else {
                d.label = Some("not a struct, enum or type alias of this program".into());
            }
        }
        Ty::Unknown
    }

    // ---------------------------------------------------------- policies

    fn check_policy(&mut self, policy: &Policy) {
        for parent in &policy.extends {
            if !self.policies.contains_key(parent.name.as_str()) {
                self.error(
                    Code::E0105,
                    parent.span,
                    format!(
                        "`{}` extends `{}`, which is not defined",
                        policy.name.name, parent.name
                    ),
                );
            } else if self.extends_itself(&policy.name.name, &parent.name) {
                self.error(
                    Code::E0105,
                    parent.span,
                    format!(
                        "`{}` extends itself through `{}`",
                        policy.name.name, parent.name
                    ),
                );
            }
        }
        let mut keys: Vec<&Ident> = Vec::new();
        for rule in &policy.rules {
            match &rule.kind {
                PolicyRuleKind::Allow(actions) | PolicyRuleKind::Deny(actions) => {
                    for action in actions {
                        if !matches!(action.kind, ExprKind::Str(_)) {
                            self.error(
                                Code::E0212,
                                action.span,
                                "policy actions are string literals such as \"read\"",
                            );
                        }
                    }
                }
                // Conditions name attributes of principals, data and
                // datasets, which the policy engine evaluates; they are not
                // variables of the program.
                PolicyRuleKind::Require(_) => {}
                PolicyRuleKind::Conditions(entries) => keys.extend(entries.iter().map(|e| &e.key)),
            }
        }
        self.check_duplicates(keys.into_iter(), "condition");
    }

    /// Whether following `extends` from `from` reaches `target`.
    fn extends_itself(&self, target: &str, from: &str) -> bool {
        let mut stack = vec![from.to_owned()];
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = stack.pop() {
            if name == target {
                return true;
            }
            if seen.insert(name.clone())
                && let Some(parents) = self.policy_parents.get(name.as_str())
            {
                stack.extend(parents.iter().cloned());
            }
        }
        false
    }

    // ------------------------------------------------------------ agents

    fn check_agent(&mut self, agent: &Agent) {
        let mut scope = HashMap::new();
        if let Some(params) = &agent.params {
            self.check_duplicates(params.iter().map(|p| &p.name), "parameter");
            for p in params {
                let ty = self.resolve(&p.ty);
                if let Some(default) = &p.default {
                    let actual = self.expr(default);
                    self.expect_type(&ty, &actual, default.span, Code::E0207);
                }
                scope.insert(p.name.name.clone(), ty);
            }
        }
        let ret = match &agent.return_type {
            Some(t) => self.resolve(t),
            None => Ty::Void,
        };
        let mut classifier = agent.has_annotation("classifier");
        if classifier {
            // With a wrong return type, its returns are not checked again.
            classifier = self.check_classifier_signature(agent, &ret);
        }
        self.check_metadata(&agent.metadata, Some(&ret));
        self.scopes.push(scope);
        self.ret = Some((ret.clone(), classifier));
        self.block(&agent.body);
        self.ret = None;
        self.scopes.pop();
        if ret != Ty::Void && !always_returns(&agent.body) {
            self.error(
                Code::E0211,
                Span::new(agent.body.span.end.saturating_sub(1), agent.body.span.end),
                format!(
                    "the agent `{}` can reach its end without returning a `{ret}`",
                    agent.name.name
                ),
            )
            .with_label_mut("add a `return` before this brace");
        }
    }

    /// Checks a classifier's parameters and return type; returns whether
    /// the return type is right.
    fn check_classifier_signature(&mut self, agent: &Agent, ret: &Ty) -> bool {
        let arity = agent.params.as_ref().map_or(0, Vec::len);
        if arity != 1 {
            self.error(
                Code::E0201,
                agent.name.span,
                format!(
                    "the classifier `{}` must take exactly one record, not {arity}",
                    agent.name.name
                ),
            );
        }
        if !matches!(ret, Ty::String | Ty::Unknown) {
            let span = agent
                .return_type
                .as_ref()
                .map_or(agent.name.span, |t| t.span);
            self.error(
                Code::E0208,
                span,
                format!("a classifier returns `string`, not `{ret}`"),
            )
            .with_note_mut("it returns one of \"public\", \"confidential\", \"restricted\"");
            return false;
        }
        true
    }

    /// Checks `with` entries. `ret` is the agent's return type (for
    /// `prove(...)`), `None` for a `with` block inside a body.
    fn check_metadata(&mut self, entries: &[MetaEntry], ret: Option<&Ty>) {
        for entry in entries {
            match entry {
                MetaEntry::Pair { key, value, .. } if key.name == "classifier" => {
                    let ExprKind::Str(name) = &value.kind else {
                        self.error(
                            Code::E0210,
                            value.span,
                            "`classifier` names an agent as a string, e.g. classifier = \"triage\"",
                        );
                        continue;
                    };
                    match self.agents.get(name.as_str()) {
                        None => {
                            self.error(
                                Code::E0104,
                                value.span,
                                format!("no agent named `{name}` is defined"),
                            );
                        }
                        Some(sig) if !sig.classifier => {
                            let span = sig.span;
                            self.error(
                                Code::E0210,
                                value.span,
                                format!("the agent `{name}` is not annotated `@classifier`"),
                            )
                            .with_secondary_mut(span, "defined here");
                        }
                        Some(_) => {}
                    }
                }
                MetaEntry::Pair { key, value, .. } if key.name == "sandbox" => {
                    let known = symbiont_ir::risk::SANDBOX_NAMES;
                    let named = match &value.kind {
                        ExprKind::Str(name) => known.contains(&name.as_str()),
                        _ => false,
                    };
                    if !named {
                        self.error(
                            Code::E0210,
                            value.span,
                            format!(
                                "`sandbox` names a sandbox as a string: one of {}",
                                known
                                    .iter()
                                    .map(|n| format!("\"{n}\""))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        );
                    }
                }
                MetaEntry::Pair { .. } => {}
                MetaEntry::Policy { policies, .. } => {
                    for p in policies {
                        match &p.kind {
                            ExprKind::Ident(name) if self.policies.contains_key(name.as_str()) => {}
                            ExprKind::Ident(name) => {
                                self.error(
                                    Code::E0105,
                                    p.span,
                                    format!("no policy named `{name}` is defined"),
                                );
                            }
                            _ => {
                                self.error(
                                    Code::E0105,
                                    p.span,
                                    "`policy(...)` takes the names of policies",
                                );
                            }
                        }
                    }
                }
                MetaEntry::Crypto {
                    kind: CryptoKind::Prove,
                    args,
                    ..
                } => {
                    if let Some(ret) = ret {
                        self.check_prove(args, ret);
                    }
                }
                MetaEntry::Crypto { .. } => {}
            }
        }
    }

    /// `prove(a, b)` names fields of the agent's result (or of its
    /// elements, for an `Array` result) that the proof attests.
    fn check_prove(&mut self, args: &[Arg], ret: &Ty) {
        let record = match ret {
            Ty::Array(t) | Ty::Stream(t) => (**t).clone(),
            t => t.clone(),
        };
        for arg in args {
            let ExprKind::Ident(name) = &arg.value().kind else {
                self.error(
                    Code::E0210,
                    arg.span(),
                    "`prove(...)` names fields of the agent's result",
                );
                continue;
            };
            match self.field_type(&record, name) {
                Some(Some(_)) => {}
                _ if record == Ty::Unknown => {}
                Some(None) => {
                    self.error(
                        Code::E0210,
                        arg.span(),
                        format!(
                            "`prove({name})`: the result type `{record}` has no field `{name}`"
                        ),
                    );
                }
                None => {
                    self.error(
                        Code::E0210,
                        arg.span(),
                        format!(
                            "`prove({name})`: the result type `{record}` has no fields to attest"
                        ),
                    )
                    .with_note_mut("return a struct and name the fields to prove");
                }
            }
        }
    }

    /// The type of `field` of a struct or record: `Some(None)` when it has
    /// no such field, `None` when the type has no fields at all (or is
    /// unknown).
    fn field_type(&self, ty: &Ty, field: &str) -> Option<Option<Ty>> {
        let fields = match ty {
            Ty::Struct(name) => self.struct_fields.get(name.as_str())?,
            Ty::Record(fields) => fields,
            _ => return None,
        };
        Some(
            fields
                .iter()
                .find(|(n, _)| n == field)
                .map(|(_, t)| t.clone()),
        )
    }

    // -------------------------------------------------------- statements

    fn block(&mut self, block: &Block) {
        self.scopes.push(HashMap::new());
        for stmt in &block.stmts {
            self.stmt(stmt);
        }
        self.scopes.pop();
    }

    fn bind(&mut self, name: &str, ty: Ty) {
        self.scopes
            .last_mut()
            .expect("statements are checked inside a scope")
            .insert(name.to_owned(), ty);
    }

    fn lookup(&self, name: &str) -> Option<&Ty> {
        self.scopes.iter().rev().find_map(|s| s.get(name))
    }

    fn stmt(&mut self, stmt: &Stmt) {
        match &stmt.kind {
            StmtKind::Let { name, ty, value } => {
                let actual = self.expr(value);
                let bound = match ty {
                    Some(t) => {
                        let declared = self.resolve(t);
                        self.expect_type(&declared, &actual, value.span, Code::E0207);
                        declared
                    }
                    None => actual,
                };
                self.bind(&name.name, bound);
            }
            StmtKind::Assign { target, value } => {
                let actual = self.expr(value);
                if let ExprKind::Ident(name) = &target.kind {
                    match self.lookup(name).cloned() {
                        Some(declared) => {
                            self.expect_type(&declared, &actual, value.span, Code::E0207)
                        }
                        None => {
                            self.error(
                                Code::E0103,
                                target.span,
                                format!("cannot assign to `{name}`: it is not defined"),
                            )
                            .with_note_mut(format!("declare it first: `let {name} = ...;`"));
                        }
                    }
                } else {
                    let declared = self.expr(target);
                    self.expect_type(&declared, &actual, value.span, Code::E0207);
                }
            }
            StmtKind::Destructure { targets, value } => {
                self.expr(value);
                self.check_duplicates(targets.iter(), "binding");
                for t in targets {
                    self.bind(&t.name, Ty::Unknown);
                }
            }
            StmtKind::Return(value) => self.check_return(value.as_ref(), stmt.span),
            StmtKind::If {
                cond,
                then,
                otherwise,
            } => {
                self.condition(cond);
                self.block(then);
                match otherwise.as_deref() {
                    Some(Else::Block(b)) => self.block(b),
                    Some(Else::If(s)) => self.stmt(s),
                    None => {}
                }
            }
            StmtKind::While { cond, body } => {
                self.condition(cond);
                self.block(body);
            }
            StmtKind::For {
                var,
                iterable,
                body,
            } => {
                let ty = self.expr(iterable);
                let element = ty.element().unwrap_or_else(|| {
                    self.error(
                        Code::E0213,
                        iterable.span,
                        format!("cannot iterate over a value of type `{ty}`"),
                    )
                    .with_note_mut("`for` iterates over an Array or a Stream");
                    Ty::Unknown
                });
                self.scopes
                    .push(HashMap::from([(var.name.clone(), element)]));
                self.block(body);
                self.scopes.pop();
            }
            StmtKind::Try {
                body,
                error,
                handler,
            } => {
                self.block(body);
                self.scopes
                    .push(HashMap::from([(error.name.clone(), Ty::String)]));
                self.block(handler);
                self.scopes.pop();
            }
            StmtKind::With { metadata, body } => {
                self.check_metadata(metadata, None);
                self.block(body);
            }
            StmtKind::Block(b) => self.block(b),
            StmtKind::Expr(e) => {
                self.expr(e);
            }
        }
    }

    fn check_return(&mut self, value: Option<&Expr>, span: Span) {
        let Some((declared, classifier)) = self.ret.clone() else {
            // A `return` inside a lambda's block body.
            if let Some(v) = value {
                self.expr(v);
            }
            return;
        };
        match value {
            None if declared != Ty::Void => {
                self.error(
                    Code::E0203,
                    span,
                    format!("this agent returns `{declared}`, but `return;` returns nothing"),
                );
            }
            None => {}
            Some(v) => {
                let actual = self.expr(v);
                if classifier {
                    self.check_class_name(v);
                } else if declared == Ty::Void {
                    self.error(
                        Code::E0203,
                        v.span,
                        "this agent declares no return type but returns a value",
                    )
                    .with_note_mut("add `-> T` to the agent's signature");
                } else {
                    self.expect_type(&declared, &actual, v.span, Code::E0203);
                }
            }
        }
    }

    fn check_class_name(&mut self, value: &Expr) {
        match &value.kind {
            ExprKind::Str(s) if CLASS_NAMES.contains(&s.as_str()) => {}
            ExprKind::Str(s) => {
                self.error(
                    Code::E0208,
                    value.span,
                    format!("`{s}` is not a class name"),
                )
                .with_note_mut(
                    "a classifier returns \"public\", \"confidential\" or \"restricted\"",
                );
            }
            _ => {
                self.error(
                    Code::E0208,
                    value.span,
                    "a classifier must return a class name literal",
                )
                .with_note_mut(
                    "return \"public\", \"confidential\" or \"restricted\" so every lane is known before the job runs",
                );
            }
        }
    }

    fn condition(&mut self, cond: &Expr) {
        let ty = self.expr(cond);
        if !compatible(&Ty::Bool, &ty) {
            self.error(
                Code::E0205,
                cond.span,
                format!("a condition must be a `bool`, not `{ty}`"),
            );
        }
    }

    fn expect_type(&mut self, expected: &Ty, actual: &Ty, span: Span, code: Code) {
        if !compatible(expected, actual) {
            self.error(
                code,
                span,
                format!("expected `{expected}`, found `{actual}`"),
            );
        }
    }

    // ------------------------------------------------------- expressions

    fn expr(&mut self, e: &Expr) -> Ty {
        match &e.kind {
            ExprKind::Ident(name) => match self.lookup(name) {
                Some(t) => t.clone(),
                None => {
                    let d = self.error(
                        Code::E0103,
                        e.span,
                        format!("cannot find `{name}` in this scope"),
                    );
                    if name == "pii" {
                        d.notes.push(
                            "`pii` is a namespace: call a detector, e.g. `pii.ssn(x)`".into(),
                        );
                    }
                    Ty::Unknown
                }
            },
            ExprKind::SelfRef => {
                Ty::Record(vec![("id".into(), Ty::String), ("name".into(), Ty::String)])
            }
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Float(_) => Ty::Float,
            ExprKind::Str(_) => Ty::String,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Array(items) => {
                let mut element = Ty::Unknown;
                for item in items {
                    let t = self.expr(item);
                    if element == Ty::Unknown {
                        element = t;
                    } else if compatible(&element, &t) {
                    } else if compatible(&t, &element) {
                        element = t;
                    } else {
                        self.error(
                            Code::E0202,
                            item.span,
                            format!("array elements must have one type: `{element}`, then `{t}`"),
                        );
                    }
                }
                Ty::Array(Box::new(element))
            }
            ExprKind::Object(fields) => {
                self.check_duplicates(fields.iter().map(|f| &f.name), "field");
                Ty::Record(
                    fields
                        .iter()
                        .map(|f| (f.name.name.clone(), self.expr(&f.value)))
                        .collect(),
                )
            }
            ExprKind::Struct { name, fields } => self.struct_literal(name, fields, e.span),
            ExprKind::Binary { op, lhs, rhs } => {
                let l = self.expr(lhs);
                let r = self.expr(rhs);
                self.binary(*op, &l, &r, e.span)
            }
            ExprKind::Unary { op, operand } => {
                let t = self.expr(operand);
                let ok = match op {
                    UnaryOp::Not => compatible(&Ty::Bool, &t),
                    UnaryOp::Neg | UnaryOp::Plus => t.is_numeric(),
                };
                if !ok {
                    self.error(
                        Code::E0202,
                        e.span,
                        format!("`{}` cannot be applied to `{t}`", op.as_str()),
                    );
                    return Ty::Unknown;
                }
                t
            }
            ExprKind::Call { callee, args } => self.call(callee, args, e.span),
            ExprKind::Member { object, property } => self.member(object, property),
            ExprKind::AgentCall {
                agent,
                method: _,
                args,
            } => {
                if !self.agents.contains_key(agent.name.as_str()) {
                    self.error(
                        Code::E0104,
                        agent.span,
                        format!("no agent named `{}` is defined", agent.name),
                    );
                }
                for a in args {
                    self.expr(a.value());
                }
                Ty::Unknown
            }
            ExprKind::Lambda { params, .. } => {
                let unknown = vec![Ty::Unknown; params.len()];
                let ret = self.lambda(e, &unknown);
                Ty::Function(unknown, Box::new(ret))
            }
        }
    }

    fn binary(&mut self, op: BinaryOp, l: &Ty, r: &Ty, span: Span) -> Ty {
        use BinaryOp::*;
        let result = match op {
            Or | And => (compatible(&Ty::Bool, l) && compatible(&Ty::Bool, r)).then_some(Ty::Bool),
            Eq | Ne => (compatible(l, r) || compatible(r, l)).then_some(Ty::Bool),
            Lt | Gt | Le | Ge => {
                let ordered = (l.is_numeric() && r.is_numeric())
                    || (matches!(l, Ty::String | Ty::Duration | Ty::Unknown) && compatible(l, r));
                ordered.then_some(Ty::Bool)
            }
            Add | Sub | Mul | Div | Rem => match (l, r) {
                (Ty::Unknown, _) | (_, Ty::Unknown) => Some(Ty::Unknown),
                (Ty::Int, Ty::Int) => Some(Ty::Int),
                (Ty::Int | Ty::Float, Ty::Int | Ty::Float) => Some(Ty::Float),
                (Ty::String, Ty::String) if op == Add => Some(Ty::String),
                (Ty::Duration, Ty::Duration) if matches!(op, Add | Sub) => Some(Ty::Duration),
                _ => None,
            },
        };
        result.unwrap_or_else(|| {
            self.error(
                Code::E0202,
                span,
                format!("`{}` cannot be applied to `{l}` and `{r}`", op.as_str()),
            );
            Ty::Unknown
        })
    }

    fn struct_literal(&mut self, name: &Ident, fields: &[FieldInit], span: Span) -> Ty {
        let values: Vec<Ty> = fields.iter().map(|f| self.expr(&f.value)).collect();
        self.check_duplicates(fields.iter().map(|f| &f.name), "field");
        let Some(def) = self.structs.get(name.name.as_str()).copied() else {
            self.error(
                Code::E0101,
                name.span,
                format!("unknown struct `{}`", name.name),
            );
            return Ty::Unknown;
        };
        for (init, actual) in fields.iter().zip(&values) {
            match def.fields.iter().find(|f| f.name.name == init.name.name) {
                None => {
                    self.error(
                        Code::E0102,
                        init.name.span,
                        format!(
                            "the struct `{}` has no field `{}`",
                            name.name, init.name.name
                        ),
                    )
                    .with_secondary_mut(def.name.span, "struct defined here");
                }
                Some(_) => {
                    let declared = self
                        .field_type(&Ty::Struct(name.name.clone()), &init.name.name)
                        .flatten()
                        .unwrap_or(Ty::Unknown);
                    self.expect_type(&declared, actual, init.value.span, Code::E0207);
                }
            }
        }
        let missing: Vec<&str> = def
            .fields
            .iter()
            .filter(|f| !fields.iter().any(|i| i.name.name == f.name.name))
            .map(|f| f.name.name.as_str())
            .collect();
        if !missing.is_empty() {
            self.error(
                Code::E0206,
                span,
                format!(
                    "missing field(s) {} in this `{}`",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    name.name
                ),
            );
        }
        Ty::Struct(name.name.clone())
    }

    fn member(&mut self, object: &Expr, property: &Ident) -> Ty {
        // `Color.Red`: a variant of an enum.
        if let ExprKind::Ident(name) = &object.kind
            && self.lookup(name).is_none()
            && let Some(variants) = self.enums.get(name.as_str())
        {
            if !variants.contains(&property.name.as_str()) {
                self.error(
                    Code::E0102,
                    property.span,
                    format!("the enum `{name}` has no variant `{}`", property.name),
                );
            }
            return Ty::Enum(name.clone());
        }
        let ty = self.expr(object);
        let p = property.name.as_str();
        match (&ty, p) {
            (Ty::Unknown, _) => Ty::Unknown,
            (Ty::Group(k, _), "key") => (**k).clone(),
            (Ty::Group(_, t), "values") => Ty::Stream(t.clone()),
            (Ty::Int, unit) if DURATION_UNITS.contains(&unit) => Ty::Duration,
            _ => match self.field_type(&ty, p) {
                Some(Some(t)) => t,
                _ => {
                    self.error(
                        Code::E0102,
                        property.span,
                        format!("`{ty}` has no field `{p}`"),
                    );
                    Ty::Unknown
                }
            },
        }
    }

    /// Checks a lambda's body with its parameters bound to `params`,
    /// returning the body's type.
    fn lambda(&mut self, lambda: &Expr, params: &[Ty]) -> Ty {
        let ExprKind::Lambda {
            params: names,
            body,
        } = &lambda.kind
        else {
            return self.expr(lambda);
        };
        if names.len() != params.len() {
            self.error(
                Code::E0201,
                lambda.span,
                format!(
                    "this function takes {} parameter(s) here, but the lambda has {}",
                    params.len(),
                    names.len()
                ),
            );
        }
        self.check_duplicates(names.iter(), "parameter");
        let scope = names
            .iter()
            .zip(params.iter().chain(std::iter::repeat(&Ty::Unknown)))
            .map(|(n, t)| (n.name.clone(), t.clone()))
            .collect();
        self.scopes.push(scope);
        let saved = self.ret.take();
        let ty = match body.as_ref() {
            LambdaBody::Expr(e) => self.expr(e),
            LambdaBody::Block(b) => {
                self.block(b);
                Ty::Unknown
            }
        };
        self.ret = saved;
        self.scopes.pop();
        ty
    }

    /// Checks an argument that should be a function of `params`: a lambda
    /// is checked with those parameter types; returns the result type.
    fn function_arg(&mut self, arg: &Expr, params: &[Ty]) -> Ty {
        if let ExprKind::Lambda { .. } = arg.kind {
            return self.lambda(arg, params);
        }
        match self.expr(arg) {
            Ty::Function(p, r) => {
                if p.len() != params.len() {
                    self.error(
                        Code::E0204,
                        arg.span,
                        format!(
                            "expected a function of {} argument(s), found one of {}",
                            params.len(),
                            p.len()
                        ),
                    );
                }
                *r
            }
            Ty::Unknown => Ty::Unknown,
            other => {
                self.error(
                    Code::E0204,
                    arg.span,
                    format!("expected a function such as `x => ...`, found `{other}`"),
                );
                Ty::Unknown
            }
        }
    }

    fn arity(&mut self, what: &str, args: &[Arg], expected: usize, span: Span) -> bool {
        if args.len() == expected {
            return true;
        }
        self.error(
            Code::E0201,
            span,
            format!(
                "`{what}` takes {expected} argument(s) but {} were given",
                args.len()
            ),
        );
        for a in args {
            self.expr(a.value());
        }
        false
    }

    fn call(&mut self, callee: &Expr, args: &[Arg], span: Span) -> Ty {
        match &callee.kind {
            ExprKind::Ident(name) if self.lookup(name).is_none() => {
                self.call_function(name, callee.span, args, span)
            }
            ExprKind::Member { object, property } => {
                // `pii.ssn(x)` unless `pii` is a local name.
                if let ExprKind::Ident(ns) = &object.kind
                    && ns == "pii"
                    && self.lookup(ns).is_none()
                {
                    return self.call_pii(property, args, span);
                }
                let receiver = self.expr(object);
                self.call_method(&receiver, property, args, span)
            }
            _ => {
                let ty = self.expr(callee);
                match ty {
                    Ty::Function(params, ret) => {
                        if self.arity("this function", args, params.len(), span) {
                            for (a, p) in args.iter().zip(&params) {
                                let t = self.expr(a.value());
                                self.expect_type(p, &t, a.span(), Code::E0204);
                            }
                        }
                        *ret
                    }
                    Ty::Unknown => {
                        for a in args {
                            self.expr(a.value());
                        }
                        Ty::Unknown
                    }
                    other => {
                        self.error(
                            Code::E0209,
                            callee.span,
                            format!("a value of type `{other}` cannot be called"),
                        );
                        Ty::Unknown
                    }
                }
            }
        }
    }

    fn call_pii(&mut self, detector: &Ident, args: &[Arg], span: Span) -> Ty {
        if !PII_DETECTORS.contains(&detector.name.as_str()) {
            self.error(
                Code::E0106,
                detector.span,
                format!("there is no PII detector `pii.{}`", detector.name),
            )
            .with_note_mut(format!(
                "the detectors are {}",
                PII_DETECTORS
                    .iter()
                    .map(|d| format!("pii.{d}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            return Ty::Bool;
        }
        let what = format!("pii.{}", detector.name);
        if self.arity(&what, args, 1, span) {
            let t = self.expr(args[0].value());
            self.expect_type(&Ty::String, &t, args[0].span(), Code::E0204);
        }
        Ty::Bool
    }

    /// Built-in functions and calls of agents by name.
    fn call_function(&mut self, name: &str, name_span: Span, args: &[Arg], span: Span) -> Ty {
        match name {
            "count" => {
                if self.arity(name, args, 1, span) {
                    let t = self.expr(args[0].value());
                    if t.element().is_none() && !matches!(t, Ty::Grouped(..)) {
                        self.error(
                            Code::E0204,
                            args[0].span(),
                            format!("`count` takes a Stream or an Array, not `{t}`"),
                        );
                    }
                }
                Ty::Int
            }
            "sum" | "avg" | "min" | "max" => {
                if !self.arity(name, args, 1, span) {
                    return Ty::Unknown;
                }
                let t = self.expr(args[0].value());
                let Some(element) = t.element() else {
                    self.error(
                        Code::E0204,
                        args[0].span(),
                        format!("`{name}` takes a Stream or an Array, not `{t}`"),
                    )
                    .with_note_mut(format!(
                        "select a field first, e.g. `{name}(records.map(r => r.amount))`"
                    ));
                    return Ty::Unknown;
                };
                let orderable = element.is_numeric()
                    || (matches!(name, "min" | "max") && element == Ty::String);
                if !orderable {
                    self.error(
                        Code::E0204,
                        args[0].span(),
                        format!("`{name}` needs numbers, found `{t}`"),
                    );
                    return Ty::Unknown;
                }
                if name == "avg" { Ty::Float } else { element }
            }
            "export" | "persist" | "share" => {
                if self.arity(name, args, 2, span) {
                    self.expr(args[0].value());
                    let t = self.expr(args[1].value());
                    self.expect_type(&Ty::String, &t, args[1].span(), Code::E0204);
                }
                Ty::Void
            }
            _ => {
                if let Some(sig) = self.agents.get(name) {
                    let (params, ret) = (sig.params.clone(), sig.ret.clone());
                    if self.arity(name, args, params.len(), span) {
                        for (a, p) in args.iter().zip(&params) {
                            let t = self.expr(a.value());
                            self.expect_type(p, &t, a.span(), Code::E0204);
                        }
                    }
                    return ret;
                }
                self.error(
                    Code::E0106,
                    name_span,
                    format!("cannot find a function or agent named `{name}`"),
                )
                .with_note_mut(
                    "the built-in functions are count, sum, avg, min, max, export, persist, share",
                );
                for a in args {
                    self.expr(a.value());
                }
                Ty::Unknown
            }
        }
    }

    fn call_method(&mut self, receiver: &Ty, method: &Ident, args: &[Arg], span: Span) -> Ty {
        let m = method.name.as_str();
        let collection = |t: &Ty, element: Ty| match t {
            Ty::Stream(_) => Ty::Stream(Box::new(element)),
            _ => Ty::Array(Box::new(element)),
        };
        match (receiver, m) {
            (Ty::Unknown, _) => {
                for a in args {
                    self.expr(a.value());
                }
                Ty::Unknown
            }
            (Ty::Stream(t) | Ty::Array(t), "filter") => {
                if self.arity(m, args, 1, span) {
                    let r = self.function_arg(args[0].value(), &[(**t).clone()]);
                    if !compatible(&Ty::Bool, &r) {
                        self.error(
                            Code::E0204,
                            args[0].span(),
                            format!("`filter` needs a predicate returning `bool`, not `{r}`"),
                        );
                    }
                }
                receiver.clone()
            }
            (Ty::Stream(t) | Ty::Array(t), "map") => {
                if !self.arity(m, args, 1, span) {
                    return Ty::Unknown;
                }
                let r = self.function_arg(args[0].value(), &[(**t).clone()]);
                collection(receiver, r)
            }
            (Ty::Stream(t) | Ty::Array(t), "group_by") => {
                if !self.arity(m, args, 1, span) {
                    return Ty::Unknown;
                }
                let key = self.function_arg(args[0].value(), &[(**t).clone()]);
                Ty::Grouped(Box::new(key), t.clone())
            }
            (Ty::Grouped(k, t), "map") => {
                if !self.arity(m, args, 1, span) {
                    return Ty::Unknown;
                }
                let group = Ty::Group(k.clone(), t.clone());
                let r = self.function_arg(args[0].value(), &[group]);
                Ty::Array(Box::new(r))
            }
            (Ty::Array(t), "push") => {
                if self.arity(m, args, 1, span) {
                    let a = self.expr(args[0].value());
                    self.expect_type(t, &a, args[0].span(), Code::E0204);
                }
                Ty::Void
            }
            (Ty::Array(t), "reduce") => {
                if self.arity(m, args, 1, span) {
                    self.function_arg(args[0].value(), &[(**t).clone(), (**t).clone()]);
                }
                (**t).clone()
            }
            (Ty::Array(_) | Ty::String, "len") => {
                self.arity(m, args, 0, span);
                Ty::Int
            }
            (Ty::String, "contains" | "starts_with" | "ends_with") => {
                if self.arity(m, args, 1, span) {
                    let a = self.expr(args[0].value());
                    self.expect_type(&Ty::String, &a, args[0].span(), Code::E0204);
                }
                Ty::Bool
            }
            (Ty::String, "lower" | "upper" | "trim") => {
                self.arity(m, args, 0, span);
                Ty::String
            }
            (Ty::Int, unit) if DURATION_UNITS.contains(&unit) => {
                self.arity(m, args, 0, span);
                Ty::Duration
            }
            _ => {
                // A field holding a function can be called like a method.
                if let Some(Some(Ty::Function(params, ret))) = self.field_type(receiver, m) {
                    if self.arity(m, args, params.len(), span) {
                        for (a, p) in args.iter().zip(&params) {
                            let t = self.expr(a.value());
                            self.expect_type(p, &t, a.span(), Code::E0204);
                        }
                    }
                    return *ret;
                }
                self.error(
                    Code::E0106,
                    method.span,
                    format!("`{receiver}` has no method `{m}`"),
                );
                for a in args {
                    self.expr(a.value());
                }
                Ty::Unknown
            }
        }
    }
}

/// Whether every path through `block` ends in a `return`.
fn always_returns(block: &Block) -> bool {
    block.stmts.iter().any(stmt_returns)
}

fn stmt_returns(stmt: &Stmt) -> bool {
    match &stmt.kind {
        StmtKind::Return(_) => true,
        StmtKind::If {
            then,
            otherwise: Some(otherwise),
            ..
        } => {
            always_returns(then)
                && match otherwise.as_ref() {
                    Else::Block(b) => always_returns(b),
                    Else::If(s) => stmt_returns(s),
                }
        }
        StmtKind::Try { body, handler, .. } => always_returns(body) && always_returns(handler),
        StmtKind::With { body, .. } | StmtKind::Block(body) => always_returns(body),
        _ => false,
    }
}

/// Builder-style helpers on a diagnostic already pushed.
trait DiagnosticExt {
    fn with_secondary_mut(&mut self, span: Span, label: &str) -> &mut Self;
    fn with_note_mut(&mut self, note: impl Into<String>) -> &mut Self;
    fn with_label_mut(&mut self, label: &str) -> &mut Self;
}

impl DiagnosticExt for Diagnostic {
    fn with_secondary_mut(&mut self, span: Span, label: &str) -> &mut Self {
        self.secondary.push((span, label.to_owned()));
        self
    }

    fn with_note_mut(&mut self, note: impl Into<String>) -> &mut Self {
        self.notes.push(note.into());
        self
    }

    fn with_label_mut(&mut self, label: &str) -> &mut Self {
        self.label = Some(label.to_owned());
        self
    }
}
