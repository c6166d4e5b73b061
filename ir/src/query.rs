//! A checked program's entry agent as a query: the source schema, the
//! classifier, the aggregates and how the result is assembled from them.

use serde::{Deserialize, Serialize};

use crate::expr::{BinOp, Env, EvalError, Pipeline, Scalar, UnOp};
use crate::value::Value;

/// The three lanes a record can be routed into.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Lane {
    /// `"public"`: plaintext.
    Plaintext,
    /// `"confidential"`: AES-256-GCM.
    AesGcm,
    /// `"restricted"`: homomorphic encryption.
    Homomorphic,
}

impl Lane {
    /// Every lane, in output order.
    pub const ALL: [Lane; 3] = [Lane::Plaintext, Lane::AesGcm, Lane::Homomorphic];

    /// The lane of a class name.
    pub fn from_class(class: &str) -> Option<Lane> {
        match class {
            "public" => Some(Lane::Plaintext),
            "confidential" => Some(Lane::AesGcm),
            "restricted" => Some(Lane::Homomorphic),
            _ => None,
        }
    }

    /// The lane's name in `_meta` (`plaintext`, `aes_gcm`, `homomorphic`).
    pub fn name(self) -> &'static str {
        match self {
            Lane::Plaintext => "plaintext",
            Lane::AesGcm => "aes_gcm",
            Lane::Homomorphic => "homomorphic",
        }
    }

    /// The class a classifier returns for the lane (`public`,
    /// `confidential`, `restricted`): `data_classification` in policies.
    pub fn class(self) -> &'static str {
        match self {
            Lane::Plaintext => "public",
            Lane::AesGcm => "confidential",
            Lane::Homomorphic => "restricted",
        }
    }

    /// The lane's index in [`Lane::ALL`].
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The type of a source field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FieldType {
    /// `int`
    Int,
    /// `float`
    Float,
    /// `string`
    Str,
    /// `bool`
    Bool,
}

impl FieldType {
    /// The DSL's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            FieldType::Int => "int",
            FieldType::Float => "float",
            FieldType::Str => "string",
            FieldType::Bool => "bool",
        }
    }
}

/// The record type of a source: a DSL struct of primitive fields.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Schema {
    /// The struct's name.
    pub name: String,
    /// Its fields, in declaration order.
    pub fields: Vec<(String, FieldType)>,
    /// Per field, the inclusive bounds its type declares
    /// (`type Age = int with range(0, 150)`); empty when none does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranges: Vec<Option<(i64, i64)>>,
}

impl Schema {
    /// The declared bounds of field `f`, if its type has them.
    pub fn range(&self, f: usize) -> Option<(i64, i64)> {
        self.ranges.get(f).copied().flatten()
    }

    /// Why `value` of field `f` is outside the field's declared range,
    /// naming the bounds and never the value; `None` if it is inside (or
    /// the field has none).
    pub fn out_of_range(&self, f: usize, value: i64) -> Option<String> {
        let (lo, hi) = self.range(f)?;
        (value < lo || value > hi)
            .then(|| format!("outside the range {lo}..={hi} its type declares"))
    }
}

/// A statement of a classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ClassStmt {
    /// `let` into local slot `n`.
    Let(usize, Scalar),
    /// `if (cond) { then } else { otherwise }`
    If(Scalar, Vec<ClassStmt>, Vec<ClassStmt>),
    /// `return "class";`
    Return(Lane),
}

/// A compiled `@classifier` agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Classifier {
    /// The agent's name.
    pub name: String,
    /// Its body.
    pub body: Vec<ClassStmt>,
    /// How many local slots it uses.
    pub locals: usize,
}

impl Classifier {
    /// The lane of one record.
    #[inline]
    pub fn classify(&self, record: &[Value]) -> Result<Lane, EvalError> {
        let mut locals = vec![Value::Null; self.locals];
        run(&self.body, record, &mut locals)?.ok_or(EvalError::NoClass)
    }
}

fn run(
    body: &[ClassStmt],
    record: &[Value],
    locals: &mut [Value],
) -> Result<Option<Lane>, EvalError> {
    for stmt in body {
        match stmt {
            ClassStmt::Let(slot, e) => {
                let v = e
                    .eval(&Env {
                        record,
                        current: None,
                        locals,
                    })?
                    .into_owned();
                locals[*slot] = v;
            }
            ClassStmt::If(cond, then, otherwise) => {
                let holds = cond.holds(&Env {
                    record,
                    current: None,
                    locals,
                })?;
                let branch = if holds { then } else { otherwise };
                if let Some(lane) = run(branch, record, locals)? {
                    return Ok(Some(lane));
                }
            }
            ClassStmt::Return(lane) => return Ok(Some(*lane)),
        }
    }
    Ok(None)
}

/// The aggregate functions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggKind {
    /// `count`
    Count,
    /// `sum`
    Sum,
    /// `avg`
    Avg,
    /// `min`
    Min,
    /// `max`
    Max,
}

impl AggKind {
    /// The DSL's name.
    pub fn name(self) -> &'static str {
        match self {
            AggKind::Count => "count",
            AggKind::Sum => "sum",
            AggKind::Avg => "avg",
            AggKind::Min => "min",
            AggKind::Max => "max",
        }
    }
}

/// One aggregate of the query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggregateSpec {
    /// Which function.
    pub kind: AggKind,
    /// The filters and maps before it (after the grouping's, if any).
    pub pipeline: Pipeline,
    /// The DSL text it came from, for `explain`.
    pub label: String,
}

/// `stream.group_by(key).map(g => ...)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grouping {
    /// The filters and maps before `group_by`.
    pub pipeline: Pipeline,
    /// The key, evaluated on the element the pipeline yields.
    pub key: Scalar,
}

/// How a result value is computed from the aggregates.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OutExpr {
    /// Aggregate `n` of [`Query::aggregates`].
    Agg(usize),
    /// The group's key (`g.key`).
    Key,
    /// A constant.
    Const(Value),
    /// `op x`
    Unary(UnOp, Box<OutExpr>),
    /// `x op y`
    Binary(BinOp, Box<OutExpr>, Box<OutExpr>),
}

/// The shape of the result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// One value.
    Scalar(OutExpr),
    /// A struct, fields in declaration order.
    Struct {
        /// The struct's name.
        name: String,
        /// Its fields.
        fields: Vec<(String, OutExpr)>,
    },
    /// One result per group, ordered by key.
    Groups(Box<Output>),
}

impl Query {
    /// Which schema fields the query reads (the classifier, the grouping
    /// and the aggregates). A source need only validate the others.
    pub fn used_fields(&self) -> Vec<bool> {
        let mut used = vec![false; self.schema.fields.len()];
        let mut scalars: Vec<&Scalar> = Vec::new();
        if let Some(c) = &self.classifier {
            collect_class(&c.body, &mut scalars);
        }
        if let Some(g) = &self.grouping {
            scalars.push(&g.key);
            scalars.extend(g.pipeline.scalars());
        }
        for a in &self.aggregates {
            scalars.extend(a.pipeline.scalars());
        }
        while let Some(s) = scalars.pop() {
            match s {
                Scalar::Field(i) => {
                    if let Some(u) = used.get_mut(*i) {
                        *u = true;
                    }
                }
                Scalar::Const(_) | Scalar::Current | Scalar::Local(_) => {}
                Scalar::Unary(_, x) | Scalar::Pii(_, x) => scalars.push(x),
                Scalar::Binary(_, l, r) => {
                    scalars.push(l);
                    scalars.push(r);
                }
                Scalar::Str(_, x, arg) => {
                    scalars.push(x);
                    scalars.extend(arg.as_deref());
                }
            }
        }
        used
    }
}

fn collect_class<'a>(body: &'a [ClassStmt], out: &mut Vec<&'a Scalar>) {
    for stmt in body {
        match stmt {
            ClassStmt::Let(_, e) => out.push(e),
            ClassStmt::If(c, then, otherwise) => {
                out.push(c);
                collect_class(then, out);
                collect_class(otherwise, out);
            }
            ClassStmt::Return(_) => {}
        }
    }
}

/// An entry agent compiled for the engine.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// The entry agent's name.
    pub agent: String,
    /// The stream parameter bound with `--input NAME=PATH`.
    pub input: String,
    /// The records' type.
    pub schema: Schema,
    /// The classifier; without one every record is public.
    pub classifier: Option<Classifier>,
    /// The grouping, for grouped results.
    pub grouping: Option<Grouping>,
    /// The aggregates.
    pub aggregates: Vec<AggregateSpec>,
    /// How the result is assembled.
    pub output: Output,
    /// Output fields named in `prove(...)`.
    pub prove: Vec<String>,
    /// Policies named in `policy(...)`.
    pub policies: Vec<String>,
    /// Every record is raised to at least this lane (a policy's
    /// `require: [encryption == "aes-256-gcm"]`); `Plaintext` otherwise.
    pub min_lane: Lane,
    /// The sandbox tiers its policies require of the compute stages
    /// (`require: [tier >= N]`, `with sandbox = "gvisor"`): the least tier
    /// and where the requirement comes from.
    #[serde(default)]
    pub tier_requirements: Vec<(u8, String)>,
}

impl Query {
    /// Whether its aggregation runs the program's own code (a filter, a
    /// map or a grouping key) rather than built-in operators alone.
    pub fn runs_user_code(&self) -> bool {
        self.grouping.is_some() || self.aggregates.iter().any(|a| !a.pipeline.steps.is_empty())
    }

    /// Whether records of a file input can reach `lane`: the least lane a
    /// policy forces, or a lane the classifier returns.
    pub fn may_route(&self, lane: Lane) -> bool {
        fn returns(body: &[ClassStmt], lane: Lane) -> bool {
            body.iter().any(|s| match s {
                ClassStmt::Let(..) => false,
                ClassStmt::If(_, a, b) => returns(a, lane) || returns(b, lane),
                ClassStmt::Return(l) => *l == lane,
            })
        }
        match &self.classifier {
            None => lane == self.min_lane,
            Some(c) => lane == self.min_lane || (lane > self.min_lane && returns(&c.body, lane)),
        }
    }

    /// The first aggregate the homomorphic lane's additive path cannot
    /// compute (`min`, `max`), if any.
    pub fn beyond_additive(&self) -> Option<&AggregateSpec> {
        self.aggregates
            .iter()
            .find(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
    }
}
