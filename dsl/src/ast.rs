//! The typed abstract syntax tree of a Symbiont program.
//!
//! Every node carries the byte [`Span`] of the source it came from. Spans
//! serialize as `null`, so the serialized form of a tree
//! ([`Program::shape`]) is its structure alone: two parses of differently
//! formatted sources of the same program have the same shape.

use serde::{Serialize, Serializer};

/// A half-open byte range `start..end` in the source file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
}

impl Span {
    /// The span `start..end`.
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_unit()
    }
}

/// A name as written in the source.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// A whole source file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Program {
    /// Top-level definitions, in source order.
    pub items: Vec<Item>,
    /// Every comment, in source order, with its delimiters.
    pub comments: Vec<Comment>,
}

impl Program {
    /// The program's structure without source positions, as JSON.
    ///
    /// Two programs that differ only in layout have equal shapes.
    pub fn shape(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("the AST always serializes")
    }
}

/// A `//` or `/* */` comment, text included.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Comment {
    /// The comment exactly as written, delimiters included.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

/// A top-level definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Item {
    /// `import a.b as c;`
    Import(Import),
    /// `agent name(...) -> T with ... { ... }`
    Agent(Agent),
    /// `policy name { ... }`
    Policy(Policy),
    /// `type Name<T> = T with ...;`
    TypeAlias(TypeAlias),
    /// `struct Name { field: T, ... }`
    Struct(StructDef),
    /// `enum Name { A, B }`
    Enum(EnumDef),
}

impl Item {
    /// The item's span.
    pub fn span(&self) -> Span {
        match self {
            Item::Import(i) => i.span,
            Item::Agent(a) => a.span,
            Item::Policy(p) => p.span,
            Item::TypeAlias(t) => t.span,
            Item::Struct(s) => s.span,
            Item::Enum(e) => e.span,
        }
    }
}

/// `import a.b as c;`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Import {
    /// The path's segments.
    pub path: Vec<Ident>,
    /// The `as` name, if any.
    pub alias: Option<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// An agent definition.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Agent {
    /// `@name(args)` annotations, in order.
    pub annotations: Vec<Annotation>,
    /// The agent's name.
    pub name: Ident,
    /// The parameter list; `None` when the agent has no signature at all.
    pub params: Option<Vec<Param>>,
    /// The declared return type.
    pub return_type: Option<Type>,
    /// The `with` clause; empty when there is none.
    pub metadata: Vec<MetaEntry>,
    /// The body.
    pub body: Block,
    /// The whole definition, annotations included.
    pub span: Span,
}

impl Agent {
    /// Whether the agent carries the annotation `@name`.
    pub fn has_annotation(&self, name: &str) -> bool {
        self.annotations.iter().any(|a| a.name.name == name)
    }
}

/// `@name` or `@name(args)`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Annotation {
    /// The annotation's name.
    pub name: Ident,
    /// The arguments; `None` without parentheses.
    pub args: Option<Vec<Arg>>,
    /// The whole annotation.
    pub span: Span,
}

/// `name: Type = default`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Param {
    /// The parameter's name.
    pub name: Ident,
    /// Its type.
    pub ty: Type,
    /// Its default value, if any.
    pub default: Option<Expr>,
    /// The whole parameter.
    pub span: Span,
}

/// One entry of a `with` clause.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum MetaEntry {
    /// `key = literal`
    Pair {
        /// The key.
        key: Ident,
        /// The literal value.
        value: Expr,
        /// The whole entry.
        span: Span,
    },
    /// `policy(a, b)`
    Policy {
        /// The referenced policies.
        policies: Vec<Expr>,
        /// The whole entry.
        span: Span,
    },
    /// `encrypt(...)`, `sign(...)`, `prove(...)`
    Crypto {
        /// Which directive.
        kind: CryptoKind,
        /// Its arguments.
        args: Vec<Arg>,
        /// The whole entry.
        span: Span,
    },
}

impl MetaEntry {
    /// The entry's span.
    pub fn span(&self) -> Span {
        match self {
            MetaEntry::Pair { span, .. }
            | MetaEntry::Policy { span, .. }
            | MetaEntry::Crypto { span, .. } => *span,
        }
    }
}

/// The cryptographic directives of a `with` clause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum CryptoKind {
    /// `encrypt(...)`
    Encrypt,
    /// `sign(...)`
    Sign,
    /// `prove(...)`
    Prove,
}

impl CryptoKind {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            CryptoKind::Encrypt => "encrypt",
            CryptoKind::Sign => "sign",
            CryptoKind::Prove => "prove",
        }
    }
}

/// `policy name { rules }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Policy {
    /// The policy's name.
    pub name: Ident,
    /// The policies it extends (`policy p extends a, b { ... }`).
    pub extends: Vec<Ident>,
    /// Its rules, in order.
    pub rules: Vec<PolicyRule>,
    /// The whole definition.
    pub span: Span,
}

/// One rule of a policy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PolicyRule {
    /// What the rule says.
    pub kind: PolicyRuleKind,
    /// The whole rule.
    pub span: Span,
}

/// The four kinds of policy rule.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum PolicyRuleKind {
    /// `allow: ["read", ...]`
    Allow(Vec<Expr>),
    /// `deny: ["export", ...]`
    Deny(Vec<Expr>),
    /// `require: [cond, ...]`
    Require(Vec<Condition>),
    /// `conditions: { key: value, ... }`
    Conditions(Vec<ConditionEntry>),
}

/// One requirement inside `require: [...]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Condition {
    /// A boolean expression such as `audit_trail == true`.
    Expr(Expr),
    /// `name = value`, an equality written with `=`.
    Assign {
        /// The attribute.
        name: Ident,
        /// The required value.
        value: Expr,
        /// The whole condition.
        span: Span,
    },
}

impl Condition {
    /// The condition's span.
    pub fn span(&self) -> Span {
        match self {
            Condition::Expr(e) => e.span,
            Condition::Assign { span, .. } => *span,
        }
    }
}

/// `key: value` or `key: >= value` inside `conditions: {...}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConditionEntry {
    /// The attribute.
    pub key: Ident,
    /// The comparison, when one is written.
    pub op: Option<BinaryOp>,
    /// The value compared against.
    pub value: Expr,
    /// The whole entry.
    pub span: Span,
}

/// `type Name<T> = Type with annotation(...);`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeAlias {
    /// The alias.
    pub name: Ident,
    /// Type parameters.
    pub params: Vec<Ident>,
    /// The aliased type.
    pub ty: Type,
    /// `with` annotations such as `encryption("AES-256-GCM")`.
    pub annotations: Vec<TypeAnnotation>,
    /// The whole definition.
    pub span: Span,
}

impl TypeAlias {
    /// The inclusive bounds its `range(lo, hi)` annotation declares, if it
    /// has one: both integer literals, `lo <= hi`. An annotation that is
    /// not that is an error at the annotation's span.
    pub fn declared_range(&self) -> Result<Option<(i64, i64)>, (Span, String)> {
        let mut ranges = self.annotations.iter().filter(|a| a.name.name == "range");
        let Some(range) = ranges.next() else {
            return Ok(None);
        };
        if let Some(again) = ranges.next() {
            return Err((again.span, "a type declares one `range`".into()));
        }
        let literal = |arg: &Arg| -> Option<i64> {
            let Arg::Positional(e) = arg else { return None };
            match &e.kind {
                ExprKind::Int(v) => Some(*v),
                ExprKind::Unary {
                    op: UnaryOp::Neg,
                    operand,
                    ..
                } => match operand.kind {
                    ExprKind::Int(v) => v.checked_neg(),
                    _ => None,
                },
                _ => None,
            }
        };
        let bounds: Vec<Option<i64>> = range.args.iter().map(literal).collect();
        match bounds[..] {
            [Some(lo), Some(hi)] if lo <= hi => Ok(Some((lo, hi))),
            [Some(lo), Some(hi)] => Err((
                range.span,
                format!("`range({lo}, {hi})`: the lower bound is above the upper one"),
            )),
            _ => Err((
                range.span,
                "`range` takes two integer literals, the lowest and the highest value: `range(0, 150)`".into(),
            )),
        }
    }
}

/// `encryption("AES-256-GCM")` after `with` in a type alias.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TypeAnnotation {
    /// The annotation's name.
    pub name: Ident,
    /// Its arguments.
    pub args: Vec<Arg>,
    /// The whole annotation.
    pub span: Span,
}

/// `struct Name<T> { field: Type, ... }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StructDef {
    /// The struct's name.
    pub name: Ident,
    /// Type parameters.
    pub params: Vec<Ident>,
    /// Fields, in order.
    pub fields: Vec<FieldDecl>,
    /// The whole definition.
    pub span: Span,
}

/// `name: Type` in a struct or record type.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldDecl {
    /// The field's name.
    pub name: Ident,
    /// Its type.
    pub ty: Type,
    /// The whole declaration.
    pub span: Span,
}

/// `enum Name { A, B }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EnumDef {
    /// The enum's name.
    pub name: Ident,
    /// Its variants.
    pub variants: Vec<Ident>,
    /// The whole definition.
    pub span: Span,
}

/// A type as written.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Type {
    /// What kind of type.
    pub kind: TypeKind,
    /// Where it was written.
    pub span: Span,
}

/// The forms a written type takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TypeKind {
    /// `int`, `float`, `string`, `bool`, `bytes`
    Primitive(Primitive),
    /// A named type: a struct, enum, alias or type parameter.
    Named(Ident),
    /// `Name<T, ...>`
    Generic {
        /// The generic type's name.
        name: Ident,
        /// Its arguments.
        args: Vec<Type>,
    },
    /// `(T, ...) -> R`
    Function {
        /// Parameter types.
        params: Vec<Type>,
        /// Return type.
        ret: Box<Type>,
    },
    /// `agent<Capability>`
    Agent(Ident),
    /// `{ field: T, ... }`
    Record(Vec<FieldDecl>),
    /// `enum { A, B }`
    Enum(Vec<Ident>),
}

/// The primitive types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum Primitive {
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
}

impl Primitive {
    /// The keyword.
    pub fn as_str(self) -> &'static str {
        match self {
            Primitive::Int => "int",
            Primitive::Float => "float",
            Primitive::String => "string",
            Primitive::Bool => "bool",
            Primitive::Bytes => "bytes",
        }
    }
}

/// `{ statements }`
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Block {
    /// The statements, in order.
    pub stmts: Vec<Stmt>,
    /// From `{` to `}`.
    pub span: Span,
}

/// A statement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Stmt {
    /// What kind of statement.
    pub kind: StmtKind,
    /// Where it was written.
    pub span: Span,
}

/// The forms a statement takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum StmtKind {
    /// `let name: T = value;`
    Let {
        /// The bound name.
        name: Ident,
        /// The declared type, if any.
        ty: Option<Type>,
        /// The value.
        value: Expr,
    },
    /// `target = value;` where target is a name or a member.
    Assign {
        /// What is assigned to.
        target: Expr,
        /// The value.
        value: Expr,
    },
    /// `(a, b) = value;`
    Destructure {
        /// The assigned names.
        targets: Vec<Ident>,
        /// The value.
        value: Expr,
    },
    /// `return value;`
    Return(Option<Expr>),
    /// `if (cond) { } else ...`
    If {
        /// The condition.
        cond: Expr,
        /// Taken when it holds.
        then: Block,
        /// `else { }` or `else if ...`.
        otherwise: Option<Box<Else>>,
    },
    /// `while (cond) { }`
    While {
        /// The condition.
        cond: Expr,
        /// The body.
        body: Block,
    },
    /// `for var in iterable { }`
    For {
        /// The loop variable.
        var: Ident,
        /// What is iterated.
        iterable: Expr,
        /// The body.
        body: Block,
    },
    /// `try { } catch (e) { }`
    Try {
        /// The guarded block.
        body: Block,
        /// The error's name in the handler.
        error: Ident,
        /// The handler.
        handler: Block,
    },
    /// `with metadata { }` inside an agent body.
    With {
        /// The metadata entries.
        metadata: Vec<MetaEntry>,
        /// The statements they govern.
        body: Block,
    },
    /// A nested `{ }`.
    Block(Block),
    /// `expr;`
    Expr(Expr),
}

/// What follows `else`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Else {
    /// `else { }`
    Block(Block),
    /// `else if ...`, an `If` statement.
    If(Box<Stmt>),
}

/// An expression.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Expr {
    /// What kind of expression.
    pub kind: ExprKind,
    /// Where it was written.
    pub span: Span,
}

/// The forms an expression takes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum ExprKind {
    /// A name.
    Ident(String),
    /// `self`
    SelfRef,
    /// An integer literal.
    Int(i64),
    /// A decimal literal (`1.5`).
    Float(f64),
    /// A string literal, escapes decoded.
    Str(String),
    /// `true` / `false`
    Bool(bool),
    /// `[a, b]`
    Array(Vec<Expr>),
    /// `{ key: value }`
    Object(Vec<FieldInit>),
    /// `Name { field: value }`
    Struct {
        /// The struct's name.
        name: Ident,
        /// The field initializers.
        fields: Vec<FieldInit>,
    },
    /// `left op right`
    Binary {
        /// The operator.
        op: BinaryOp,
        /// Left operand.
        lhs: Box<Expr>,
        /// Right operand.
        rhs: Box<Expr>,
    },
    /// `op operand`
    Unary {
        /// The operator.
        op: UnaryOp,
        /// The operand.
        operand: Box<Expr>,
    },
    /// `callee(args)`
    Call {
        /// What is called: a name or a member (a method).
        callee: Box<Expr>,
        /// The arguments.
        args: Vec<Arg>,
    },
    /// `object.property`
    Member {
        /// The object.
        object: Box<Expr>,
        /// The property's name.
        property: Ident,
    },
    /// `agent name.method(args)`
    AgentCall {
        /// The called agent.
        agent: Ident,
        /// The method.
        method: Ident,
        /// The arguments.
        args: Vec<Arg>,
    },
    /// `p => body` or `(a, b) => body`
    Lambda {
        /// The parameters.
        params: Vec<Ident>,
        /// The body.
        body: Box<LambdaBody>,
    },
}

/// The body of a lambda.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum LambdaBody {
    /// `x => expr`
    Expr(Expr),
    /// `x => { statements }`
    Block(Block),
}

/// `name: value` in a struct or object literal.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldInit {
    /// The field's name.
    pub name: Ident,
    /// Its value.
    pub value: Expr,
    /// The whole initializer.
    pub span: Span,
}

/// An argument of a call.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Arg {
    /// `expr`
    Positional(Expr),
    /// `name=expr`
    Named {
        /// The parameter's name.
        name: Ident,
        /// The value.
        value: Expr,
        /// The whole argument.
        span: Span,
    },
}

impl Arg {
    /// The argument's value.
    pub fn value(&self) -> &Expr {
        match self {
            Arg::Positional(e) | Arg::Named { value: e, .. } => e,
        }
    }

    /// The argument's span.
    pub fn span(&self) -> Span {
        match self {
            Arg::Positional(e) => e.span,
            Arg::Named { span, .. } => *span,
        }
    }
}

/// Binary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum BinaryOp {
    /// `||`
    Or,
    /// `&&`
    And,
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `>=`
    Ge,
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Rem,
}

impl BinaryOp {
    /// Every operator.
    pub const ALL: [BinaryOp; 13] = [
        BinaryOp::Or,
        BinaryOp::And,
        BinaryOp::Eq,
        BinaryOp::Ne,
        BinaryOp::Lt,
        BinaryOp::Gt,
        BinaryOp::Le,
        BinaryOp::Ge,
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Rem,
    ];

    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "||",
            BinaryOp::And => "&&",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Gt => ">",
            BinaryOp::Le => "<=",
            BinaryOp::Ge => ">=",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Rem => "%",
        }
    }

    /// The operator written as `s`, if any.
    pub fn from_token(s: &str) -> Option<BinaryOp> {
        BinaryOp::ALL.into_iter().find(|op| op.as_str() == s)
    }

    /// Binding strength: higher binds tighter. All levels are
    /// left-associative (the grammar's `PREC` table).
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Eq
            | BinaryOp::Ne
            | BinaryOp::Lt
            | BinaryOp::Gt
            | BinaryOp::Le
            | BinaryOp::Ge => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div | BinaryOp::Rem => 5,
        }
    }

    /// Whether the operator compares its operands.
    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }
}

/// Unary operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum UnaryOp {
    /// `!`
    Not,
    /// `-`
    Neg,
    /// `+`
    Plus,
}

impl UnaryOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            UnaryOp::Not => "!",
            UnaryOp::Neg => "-",
            UnaryOp::Plus => "+",
        }
    }
}
