//! Lowering: a checked program's entry agent becomes a
//! [`Query`](symbiont_ir::Query) for the engine.
//!
//! The entry agent's body is evaluated symbolically: a name bound to a
//! stream is a pipeline of filters and maps over the source; an aggregate
//! call registers an aggregate over a pipeline; the returned value (a
//! scalar, a struct literal, or `group_by(...).map(g => ...)`) says how the
//! result is assembled. What the engine cannot run yet is reported as
//! E0301 with the construct's position, never silently approximated.

use std::collections::HashMap;

use symbiont_ir::{
    AggKind, AggregateSpec, BinOp, ClassStmt, Classifier, Detector, FieldType, Grouping, Lane,
    OutExpr, Output, Pipeline, Query, Scalar, Schema, Step, StrMethod, UnOp, Value,
};

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic};

type Lowered<T> = Result<T, Diagnostic>;

fn unsupported(span: Span, what: impl Into<String>) -> Diagnostic {
    Diagnostic::error(Code::E0301, span, what)
        .with_note("see docs/LANGUAGE.md, \"How a program becomes a pipeline\"")
}

/// The agents that can be run: those with a `Stream<T>` parameter.
pub fn entry_agents(program: &Program) -> Vec<&Agent> {
    program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Agent(a)
                if a.params
                    .iter()
                    .flatten()
                    .any(|p| stream_element(&p.ty).is_some()) =>
            {
                Some(a)
            }
            _ => None,
        })
        .collect()
}

fn stream_element(ty: &Type) -> Option<&Ident> {
    match &ty.kind {
        TypeKind::Generic { name, args } if name.name == "Stream" => match args.as_slice() {
            [
                Type {
                    kind: TypeKind::Named(element),
                    ..
                },
            ] => Some(element),
            _ => None,
        },
        _ => None,
    }
}

/// Why a program cannot run: its diagnostics, and whether they are all
/// policy denials (a valid program a policy forbids) rather than errors.
#[derive(Debug)]
pub struct Rejected {
    pub diagnostics: Vec<Diagnostic>,
    pub denied: bool,
}

/// What a job runs of a parsed program: checked (types, then, on a
/// program otherwise valid, its policies: nothing runs that a policy
/// denies), then its entry agent lowered with [`lower_query`].
pub fn runnable(program: &Program, source: &str, entry: Option<&str>) -> Result<Query, Rejected> {
    let diagnostics = crate::check(program);
    if !diagnostics.is_empty() {
        return Err(Rejected {
            diagnostics,
            denied: false,
        });
    }
    let denials = crate::check_policies(program);
    if !denials.is_empty() {
        return Err(Rejected {
            denied: denials.iter().all(|d| d.code.is_policy()),
            diagnostics: denials,
        });
    }
    lower_query(program, source, entry).map_err(|d| Rejected {
        diagnostics: vec![d],
        denied: false,
    })
}

/// Lowers the entry agent (`entry`, or the only agent with a `Stream<T>`
/// parameter) of a program that has passed [`crate::check`].
/// `source` is the program's text, quoted in the plan's labels.
pub fn lower_query(
    program: &Program,
    source: &str,
    entry: Option<&str>,
) -> Result<Query, Diagnostic> {
    let candidates = entry_agents(program);
    let agent = match entry {
        Some(name) => *candidates
            .iter()
            .find(|a| a.name.name == name)
            .ok_or_else(|| {
                unsupported(
                    Span::default(),
                    format!("no agent named `{name}` takes a Stream<T> parameter"),
                )
            })?,
        None => match candidates.as_slice() {
            [one] => *one,
            [] => {
                return Err(unsupported(
                    Span::default(),
                    "the program has no entry agent: no agent takes a `Stream<T>` parameter",
                ));
            }
            [first, second, ..] => {
                return Err(unsupported(
                    second.name.span,
                    format!(
                        "several agents take a Stream parameter (`{}`, `{}`); name one with --agent",
                        first.name.name, second.name.name
                    ),
                )
                .with_secondary(first.name.span, "also an entry agent"));
            }
        },
    };
    let params = agent.params.as_deref().unwrap_or_default();
    let [param] = params else {
        return Err(unsupported(
            agent.name.span,
            "an entry agent takes exactly one parameter, its `Stream<T>` (joins of several inputs are not supported yet)",
        ));
    };
    let element = stream_element(&param.ty).ok_or_else(|| {
        unsupported(
            param.ty.span,
            "the entry agent's parameter must be `Stream<T>` for a struct `T`",
        )
    })?;
    let structs: HashMap<&str, &StructDef> = program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::Struct(s) => Some((s.name.name.as_str(), s)),
            _ => None,
        })
        .collect();
    let def = structs
        .get(element.name.as_str())
        .ok_or_else(|| unsupported(element.span, "the stream's element type must be a struct"))?;
    let schema = schema_of(def, program)?;

    let mut classifier = None;
    let mut prove = Vec::new();
    let mut policies = Vec::new();
    for entry in &agent.metadata {
        match entry {
            MetaEntry::Pair { key, value, .. } if key.name == "classifier" => {
                if let ExprKind::Str(name) = &value.kind {
                    let target = program.items.iter().find_map(|i| match i {
                        Item::Agent(a) if &a.name.name == name => Some(a),
                        _ => None,
                    });
                    let target =
                        target.ok_or_else(|| unsupported(value.span, "unknown classifier"))?;
                    classifier = Some(lower_classifier(target, &schema)?);
                }
            }
            MetaEntry::Crypto {
                kind: CryptoKind::Prove,
                args,
                ..
            } => prove.extend(args.iter().filter_map(|a| match &a.value().kind {
                ExprKind::Ident(n) => Some(n.clone()),
                _ => None,
            })),
            MetaEntry::Policy { policies: ps, .. } => {
                policies.extend(ps.iter().filter_map(|p| match &p.kind {
                    ExprKind::Ident(n) => Some(n.clone()),
                    _ => None,
                }))
            }
            _ => {}
        }
    }

    let mut body = Body {
        source,
        schema: &schema,
        input: &param.name.name,
        env: HashMap::new(),
        aggregates: Vec::new(),
        grouping: None,
    };
    let output = body.block(&agent.body)?;
    let (grouping, aggregates) = (body.grouping, body.aggregates);
    Ok(Query {
        agent: agent.name.name.clone(),
        input: param.name.name.clone(),
        schema,
        classifier,
        grouping,
        aggregates,
        output,
        prove,
        policies,
        min_lane: crate::policy::job_forced_lane(program, &agent.name.name)
            .unwrap_or(Lane::Plaintext),
        tier_requirements: crate::policy::job_required_tiers(program, agent),
    })
}

fn schema_of(def: &StructDef, program: &Program) -> Lowered<Schema> {
    let aliases: HashMap<&str, &TypeAlias> = program
        .items
        .iter()
        .filter_map(|i| match i {
            Item::TypeAlias(t) if t.params.is_empty() => Some((t.name.name.as_str(), t)),
            _ => None,
        })
        .collect();
    let mut fields = Vec::with_capacity(def.fields.len());
    let mut ranges = Vec::with_capacity(def.fields.len());
    for f in &def.fields {
        // A field's type is a primitive, or an alias of one (through other
        // aliases); every `range(lo, hi)` on the way bounds it.
        let mut ty = &f.ty;
        let mut range: Option<(i64, i64)> = None;
        let mut seen = 0;
        while let TypeKind::Named(name) = &ty.kind
            && let Some(alias) = aliases.get(name.name.as_str())
            && seen < aliases.len()
        {
            if let Some((lo, hi)) = alias
                .declared_range()
                .map_err(|(span, why)| unsupported(span, why))?
            {
                range = Some(match range {
                    None => (lo, hi),
                    Some((l, h)) => (l.max(lo), h.min(hi)),
                });
            }
            ty = &alias.ty;
            seen += 1;
        }
        if let Some((lo, hi)) = range
            && lo > hi
        {
            return Err(unsupported(
                f.ty.span,
                format!(
                    "the ranges its type's aliases declare have no value in common ({lo} > {hi})"
                ),
            ));
        }
        let field_type = match &ty.kind {
            TypeKind::Primitive(Primitive::Int) => FieldType::Int,
            TypeKind::Primitive(Primitive::Float) => FieldType::Float,
            TypeKind::Primitive(Primitive::String) => FieldType::Str,
            TypeKind::Primitive(Primitive::Bool) => FieldType::Bool,
            _ => {
                return Err(unsupported(
                    f.ty.span,
                    "record fields of a dataset must be int, float, string or bool (or an alias of one)",
                ));
            }
        };
        if range.is_some() && field_type != FieldType::Int {
            return Err(unsupported(f.ty.span, "`range` bounds an `int` field"));
        }
        fields.push((f.name.name.clone(), field_type));
        ranges.push(range);
    }
    Ok(Schema {
        name: def.name.name.clone(),
        fields,
        ranges: if ranges.iter().any(Option::is_some) {
            ranges
        } else {
            Vec::new()
        },
    })
}

/// What a lambda's (or the classifier's) parameter stands for.
#[derive(Clone, Copy)]
enum Bound<'a> {
    /// The record, whose fields are those of the schema.
    Record(&'a Schema),
    /// A mapped value.
    Value,
}

/// Compiles a row-level expression.
struct RowExpr<'a> {
    param: &'a str,
    bound: Bound<'a>,
    /// Classifier locals by name.
    locals: &'a HashMap<String, usize>,
}

impl RowExpr<'_> {
    fn scalar(&self, e: &Expr) -> Lowered<Scalar> {
        Ok(match &e.kind {
            ExprKind::Int(v) => Scalar::Const(Value::Int(*v)),
            ExprKind::Float(v) => Scalar::Const(Value::Float(*v)),
            ExprKind::Str(s) => Scalar::Const(Value::Str(s.clone())),
            ExprKind::Bool(b) => Scalar::Const(Value::Bool(*b)),
            ExprKind::Ident(name) if name == self.param => match self.bound {
                Bound::Value => Scalar::Current,
                Bound::Record(_) => {
                    return Err(unsupported(
                        e.span,
                        "a whole record cannot be used as a value here",
                    ));
                }
            },
            ExprKind::Ident(name) => match self.locals.get(name) {
                Some(slot) => Scalar::Local(*slot),
                None => {
                    return Err(unsupported(
                        e.span,
                        format!("`{name}` cannot be used inside a per-record expression"),
                    ));
                }
            },
            ExprKind::Member { object, property } => match (&object.kind, self.bound) {
                (ExprKind::Ident(name), Bound::Record(schema)) if name == self.param => {
                    let index = schema
                        .fields
                        .iter()
                        .position(|(f, _)| *f == property.name)
                        .ok_or_else(|| unsupported(property.span, "unknown field"))?;
                    Scalar::Field(index)
                }
                _ => {
                    return Err(unsupported(
                        e.span,
                        "only fields of the record can be read here",
                    ));
                }
            },
            ExprKind::Unary { op, operand } => {
                Scalar::Unary(un_op(*op), Box::new(self.scalar(operand)?))
            }
            ExprKind::Binary { op, lhs, rhs } => Scalar::Binary(
                bin_op(*op),
                Box::new(self.scalar(lhs)?),
                Box::new(self.scalar(rhs)?),
            ),
            ExprKind::Call { callee, args } => self.call(callee, args, e.span)?,
            _ => {
                return Err(unsupported(
                    e.span,
                    "this expression cannot be evaluated per record yet",
                ));
            }
        })
    }

    fn call(&self, callee: &Expr, args: &[Arg], span: Span) -> Lowered<Scalar> {
        let ExprKind::Member { object, property } = &callee.kind else {
            return Err(unsupported(
                span,
                "only `pii.*` detectors and string methods can be called per record",
            ));
        };
        if let ExprKind::Ident(ns) = &object.kind
            && ns == "pii"
            && let Some(d) = Detector::from_name(&property.name)
            && let [arg] = args
        {
            return Ok(Scalar::Pii(d, Box::new(self.scalar(arg.value())?)));
        }
        let method = match property.name.as_str() {
            "len" => StrMethod::Len,
            "contains" => StrMethod::Contains,
            "starts_with" => StrMethod::StartsWith,
            "ends_with" => StrMethod::EndsWith,
            "lower" => StrMethod::Lower,
            "upper" => StrMethod::Upper,
            "trim" => StrMethod::Trim,
            _ => {
                return Err(unsupported(
                    span,
                    format!("`{}` cannot be called per record yet", property.name),
                ));
            }
        };
        let arg = match args {
            [] => None,
            [a] => Some(Box::new(self.scalar(a.value())?)),
            _ => return Err(unsupported(span, "too many arguments")),
        };
        Ok(Scalar::Str(method, Box::new(self.scalar(object)?), arg))
    }
}

fn un_op(op: UnaryOp) -> UnOp {
    match op {
        UnaryOp::Not => UnOp::Not,
        UnaryOp::Neg => UnOp::Neg,
        UnaryOp::Plus => UnOp::Plus,
    }
}

fn bin_op(op: BinaryOp) -> BinOp {
    match op {
        BinaryOp::Or => BinOp::Or,
        BinaryOp::And => BinOp::And,
        BinaryOp::Eq => BinOp::Eq,
        BinaryOp::Ne => BinOp::Ne,
        BinaryOp::Lt => BinOp::Lt,
        BinaryOp::Gt => BinOp::Gt,
        BinaryOp::Le => BinOp::Le,
        BinaryOp::Ge => BinOp::Ge,
        BinaryOp::Add => BinOp::Add,
        BinaryOp::Sub => BinOp::Sub,
        BinaryOp::Mul => BinOp::Mul,
        BinaryOp::Div => BinOp::Div,
        BinaryOp::Rem => BinOp::Rem,
    }
}

fn lower_classifier(agent: &Agent, schema: &Schema) -> Lowered<Classifier> {
    let param = agent
        .params
        .as_deref()
        .and_then(|p| p.first())
        .ok_or_else(|| unsupported(agent.name.span, "a classifier takes the record"))?;
    let mut locals = HashMap::new();
    let body = classifier_block(&agent.body, &param.name.name, schema, &mut locals)?;
    Ok(Classifier {
        name: agent.name.name.clone(),
        body,
        locals: locals.len(),
    })
}

fn classifier_block(
    block: &Block,
    param: &str,
    schema: &Schema,
    locals: &mut HashMap<String, usize>,
) -> Lowered<Vec<ClassStmt>> {
    let mut out = Vec::new();
    for stmt in &block.stmts {
        let row = |locals: &HashMap<String, usize>, e: &Expr| {
            RowExpr {
                param,
                bound: Bound::Record(schema),
                locals,
            }
            .scalar(e)
        };
        match &stmt.kind {
            StmtKind::Let { name, value, .. } => {
                let value = row(locals, value)?;
                let slot = locals.len();
                locals.insert(name.name.clone(), slot);
                out.push(ClassStmt::Let(slot, value));
            }
            StmtKind::If {
                cond,
                then,
                otherwise,
            } => {
                let cond = row(locals, cond)?;
                let then = classifier_block(then, param, schema, locals)?;
                let otherwise = match otherwise.as_deref() {
                    None => Vec::new(),
                    Some(Else::Block(b)) => classifier_block(b, param, schema, locals)?,
                    Some(Else::If(s)) => classifier_block(
                        &Block {
                            stmts: vec![(**s).clone()],
                            span: s.span,
                        },
                        param,
                        schema,
                        locals,
                    )?,
                };
                out.push(ClassStmt::If(cond, then, otherwise));
            }
            StmtKind::Return(Some(Expr {
                kind: ExprKind::Str(class),
                span,
            })) => out.push(ClassStmt::Return(
                Lane::from_class(class).ok_or_else(|| unsupported(*span, "not a class name"))?,
            )),
            StmtKind::Block(b) => out.extend(classifier_block(b, param, schema, locals)?),
            _ => {
                return Err(unsupported(
                    stmt.span,
                    "classifiers may use `let`, `if` and `return` only",
                ));
            }
        }
    }
    Ok(out)
}

/// A value of the entry agent's body, symbolically.
#[derive(Clone)]
enum Sym {
    /// A stream: the source (or a group's values) through a pipeline.
    Stream {
        pipeline: Pipeline,
        mapped: bool,
        in_group: bool,
    },
    /// `stream.group_by(key)`.
    Grouped { pipeline: Pipeline, key: Scalar },
    /// A group `g` inside `grouped.map(g => ...)`.
    Group,
    /// A value computed from aggregates.
    Out(OutExpr),
}

struct Body<'a> {
    source: &'a str,
    schema: &'a Schema,
    input: &'a str,
    env: HashMap<String, Sym>,
    aggregates: Vec<AggregateSpec>,
    grouping: Option<Grouping>,
}

impl Body<'_> {
    fn block(&mut self, block: &Block) -> Lowered<Output> {
        for stmt in &block.stmts {
            match &stmt.kind {
                StmtKind::Let { name, value, .. } => {
                    let sym = self.sym(value)?;
                    self.env.insert(name.name.clone(), sym);
                }
                StmtKind::Return(Some(value)) => return self.output(value),
                StmtKind::With { body, .. } | StmtKind::Block(body) => return self.block(body),
                _ => {
                    return Err(unsupported(
                        stmt.span,
                        "an entry agent's body may use `let` and `return` only, for now",
                    ));
                }
            }
        }
        Err(unsupported(block.span, "the entry agent returns nothing"))
    }

    fn output(&mut self, e: &Expr) -> Lowered<Output> {
        match &e.kind {
            ExprKind::Struct { name, fields } => Ok(Output::Struct {
                name: name.name.clone(),
                fields: fields
                    .iter()
                    .map(|f| Ok((f.name.name.clone(), self.out_expr(&f.value)?)))
                    .collect::<Lowered<_>>()?,
            }),
            ExprKind::Call { callee, args } => {
                if let ExprKind::Member { object, property } = &callee.kind
                    && property.name == "map"
                    && let Sym::Grouped { pipeline, key } = self.sym(object)?
                {
                    let [arg] = args.as_slice() else {
                        return Err(unsupported(e.span, "`map` takes one function"));
                    };
                    let ExprKind::Lambda { params, body } = &arg.value().kind else {
                        return Err(unsupported(
                            arg.span(),
                            "`map` over groups takes a lambda `g => ...`",
                        ));
                    };
                    let [g] = params.as_slice() else {
                        return Err(unsupported(arg.span(), "the lambda takes one group"));
                    };
                    if self.grouping.is_some() {
                        return Err(unsupported(
                            e.span,
                            "only one `group_by` per program is supported",
                        ));
                    }
                    self.grouping = Some(Grouping { pipeline, key });
                    let saved = self.env.insert(g.name.clone(), Sym::Group);
                    let inner = match body.as_ref() {
                        LambdaBody::Expr(body) => self.output(body),
                        LambdaBody::Block(b) => self.block(b),
                    };
                    if let Some(saved) = saved {
                        self.env.insert(g.name.clone(), saved);
                    }
                    return Ok(Output::Groups(Box::new(inner?)));
                }
                Ok(Output::Scalar(self.out_expr(e)?))
            }
            _ => Ok(Output::Scalar(self.out_expr(e)?)),
        }
    }

    fn out_expr(&mut self, e: &Expr) -> Lowered<OutExpr> {
        match self.sym(e)? {
            Sym::Out(o) => Ok(o),
            _ => Err(unsupported(
                e.span,
                "a result must be computed from aggregates such as `count(...)`",
            )),
        }
    }

    fn sym(&mut self, e: &Expr) -> Lowered<Sym> {
        Ok(match &e.kind {
            ExprKind::Ident(name) if name == self.input => Sym::Stream {
                pipeline: Pipeline::default(),
                mapped: false,
                in_group: false,
            },
            ExprKind::Ident(name) => self.env.get(name).cloned().ok_or_else(|| {
                unsupported(e.span, format!("`{name}` is not a stream or a result"))
            })?,
            ExprKind::Int(v) => Sym::Out(OutExpr::Const(Value::Int(*v))),
            ExprKind::Float(v) => Sym::Out(OutExpr::Const(Value::Float(*v))),
            ExprKind::Str(s) => Sym::Out(OutExpr::Const(Value::Str(s.clone()))),
            ExprKind::Bool(b) => Sym::Out(OutExpr::Const(Value::Bool(*b))),
            ExprKind::Unary { op, operand } => Sym::Out(OutExpr::Unary(
                un_op(*op),
                Box::new(self.out_expr(operand)?),
            )),
            ExprKind::Binary { op, lhs, rhs } => Sym::Out(OutExpr::Binary(
                bin_op(*op),
                Box::new(self.out_expr(lhs)?),
                Box::new(self.out_expr(rhs)?),
            )),
            ExprKind::Member { object, property } => {
                match (self.sym(object)?, property.name.as_str()) {
                    (Sym::Group, "key") => Sym::Out(OutExpr::Key),
                    (Sym::Group, "values") => Sym::Stream {
                        pipeline: Pipeline::default(),
                        mapped: false,
                        in_group: true,
                    },
                    _ => {
                        return Err(unsupported(
                            e.span,
                            "only `g.key` and `g.values` of a group can be used here",
                        ));
                    }
                }
            }
            ExprKind::Call { callee, args } => self.call(callee, args, e.span)?,
            _ => {
                return Err(unsupported(
                    e.span,
                    "this expression cannot be part of a pipeline yet",
                ));
            }
        })
    }

    fn call(&mut self, callee: &Expr, args: &[Arg], span: Span) -> Lowered<Sym> {
        match &callee.kind {
            ExprKind::Ident(f) => {
                let kind = match f.as_str() {
                    "count" => AggKind::Count,
                    "sum" => AggKind::Sum,
                    "avg" => AggKind::Avg,
                    "min" => AggKind::Min,
                    "max" => AggKind::Max,
                    _ => {
                        return Err(unsupported(
                            callee.span,
                            format!("`{f}` cannot run in a pipeline yet"),
                        ));
                    }
                };
                let [arg] = args else {
                    return Err(unsupported(span, "an aggregate takes one stream"));
                };
                let Sym::Stream {
                    pipeline, in_group, ..
                } = self.sym(arg.value())?
                else {
                    return Err(unsupported(arg.span(), "aggregates apply to streams"));
                };
                if self.grouping_context() != in_group {
                    return Err(unsupported(
                        arg.span(),
                        "inside `group_by(...).map(g => ...)`, aggregates apply to `g.values` only",
                    ));
                }
                self.aggregates.push(AggregateSpec {
                    kind,
                    pipeline,
                    label: self.source.get(span.start..span.end).map_or_else(
                        || kind.name().to_owned(),
                        |text| text.split_whitespace().collect::<Vec<_>>().join(" "),
                    ),
                });
                Ok(Sym::Out(OutExpr::Agg(self.aggregates.len() - 1)))
            }
            ExprKind::Member { object, property } => {
                let receiver = self.sym(object)?;
                let [arg] = args else {
                    return Err(unsupported(span, "stream methods take one function"));
                };
                let ExprKind::Lambda { params, body } = &arg.value().kind else {
                    return Err(unsupported(
                        arg.span(),
                        "stream methods take a lambda `x => ...`",
                    ));
                };
                let (LambdaBody::Expr(body), [param]) = (body.as_ref(), params.as_slice()) else {
                    return Err(unsupported(
                        arg.span(),
                        "the lambda takes one element and is an expression",
                    ));
                };
                let Sym::Stream {
                    mut pipeline,
                    mapped,
                    in_group,
                } = receiver
                else {
                    return Err(unsupported(
                        span,
                        format!("`{}` cannot be applied here", property.name),
                    ));
                };
                let no_locals = HashMap::new();
                let row = RowExpr {
                    param: &param.name,
                    bound: if mapped {
                        Bound::Value
                    } else {
                        Bound::Record(self.schema)
                    },
                    locals: &no_locals,
                };
                let scalar = row.scalar(body)?;
                match property.name.as_str() {
                    "filter" => {
                        pipeline.steps.push(Step::Filter(scalar));
                        Ok(Sym::Stream {
                            pipeline,
                            mapped,
                            in_group,
                        })
                    }
                    "map" => {
                        pipeline.steps.push(Step::Map(scalar));
                        Ok(Sym::Stream {
                            pipeline,
                            mapped: true,
                            in_group,
                        })
                    }
                    "group_by" if !mapped && !in_group => Ok(Sym::Grouped {
                        pipeline,
                        key: scalar,
                    }),
                    "group_by" => Err(unsupported(span, "`group_by` must come before any `map`")),
                    other => Err(unsupported(
                        property.span,
                        format!("`{other}` cannot run in a pipeline yet"),
                    )),
                }
            }
            _ => Err(unsupported(span, "this call cannot run in a pipeline yet")),
        }
    }

    /// Whether a group's body is being lowered.
    fn grouping_context(&self) -> bool {
        self.env.values().any(|s| matches!(s, Sym::Group))
    }
}
