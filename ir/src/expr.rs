//! The row-level expression language the DSL lowers to, and its evaluator.
//!
//! Expressions are evaluated once per record, so the evaluator borrows
//! where it can: a field or a constant is returned by reference.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::pii::Detector;
use crate::value::Value;

/// A binary operator (the DSL's thirteen).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

/// A prefix operator.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum UnOp {
    Not,
    Neg,
    Plus,
}

/// The string methods of the DSL.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StrMethod {
    Len,
    Contains,
    StartsWith,
    EndsWith,
    Lower,
    Upper,
    Trim,
}

/// An expression over one record (or one mapped value) and a classifier's
/// locals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Scalar {
    /// A constant.
    Const(Value),
    /// The current element itself, after a `map` to a non-record value.
    Current,
    /// Field `n` of the current record (in schema order).
    Field(usize),
    /// Local variable `n` of a classifier.
    Local(usize),
    /// `op operand`
    Unary(UnOp, Box<Scalar>),
    /// `left op right`
    Binary(BinOp, Box<Scalar>, Box<Scalar>),
    /// `pii.<detector>(operand)`
    Pii(Detector, Box<Scalar>),
    /// `receiver.method(argument)`
    Str(StrMethod, Box<Scalar>, Option<Box<Scalar>>),
}

/// Why evaluating an expression failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    /// Integer arithmetic left the 64-bit range.
    #[error("integer overflow in `{0}`")]
    Overflow(&'static str),
    /// Integer division or remainder by zero.
    #[error("division by zero")]
    DivisionByZero,
    /// Operands the type checker should have rejected (e.g. a null).
    #[error("`{op}` cannot be applied to {left} and {right}")]
    Type {
        /// The operator.
        op: &'static str,
        /// What the left operand was.
        left: &'static str,
        /// What the right operand was.
        right: &'static str,
    },
    /// A classifier reached its end without returning a class.
    #[error("the classifier returned no class")]
    NoClass,
}

/// What an expression can see.
#[derive(Clone, Copy, Debug)]
pub struct Env<'a> {
    /// The current record's fields, if the element is a record.
    pub record: &'a [Value],
    /// The current element when it is a mapped value.
    pub current: Option<&'a Value>,
    /// A classifier's locals.
    pub locals: &'a [Value],
}

impl<'a> Env<'a> {
    /// The environment of a record.
    #[inline]
    pub fn record(record: &'a [Value]) -> Env<'a> {
        Env {
            record,
            current: None,
            locals: &[],
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Int(_) => "an int",
        Value::Float(_) => "a float",
        Value::Str(_) => "a string",
    }
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "||",
            BinOp::And => "&&",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Gt => ">",
            BinOp::Le => "<=",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

impl Scalar {
    /// Evaluates the expression.
    #[inline]
    pub fn eval<'a>(&'a self, env: &Env<'a>) -> Result<Cow<'a, Value>, EvalError> {
        Ok(match self {
            Scalar::Const(v) => Cow::Borrowed(v),
            Scalar::Current => Cow::Borrowed(env.current.unwrap_or(&Value::Null)),
            Scalar::Field(i) => Cow::Borrowed(env.record.get(*i).unwrap_or(&Value::Null)),
            Scalar::Local(i) => Cow::Borrowed(env.locals.get(*i).unwrap_or(&Value::Null)),
            Scalar::Unary(op, x) => {
                let v = x.eval(env)?;
                Cow::Owned(match (op, v.as_ref()) {
                    (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
                    (UnOp::Neg, Value::Int(i)) => {
                        Value::Int(i.checked_neg().ok_or(EvalError::Overflow("-"))?)
                    }
                    (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
                    (UnOp::Plus, Value::Int(_) | Value::Float(_)) => v.into_owned(),
                    (_, other) => {
                        return Err(EvalError::Type {
                            op: "unary operator",
                            left: kind(other),
                            right: kind(other),
                        });
                    }
                })
            }
            Scalar::Binary(op, l, r) => Cow::Owned(self.binary(*op, l, r, env)?),
            Scalar::Pii(d, x) => Cow::Owned(Value::Bool(match x.eval(env)?.as_ref() {
                Value::Str(s) => d.matches(s),
                _ => false,
            })),
            Scalar::Str(method, receiver, arg) => {
                let r = receiver.eval(env)?;
                let Value::Str(s) = r.as_ref() else {
                    return Err(EvalError::Type {
                        op: "string method",
                        left: kind(&r),
                        right: kind(&r),
                    });
                };
                let arg = match arg {
                    Some(a) => Some(a.eval(env)?),
                    None => None,
                };
                let arg_str = || match arg.as_deref() {
                    Some(Value::Str(a)) => a.as_str(),
                    _ => "",
                };
                Cow::Owned(match method {
                    StrMethod::Len => Value::Int(s.chars().count() as i64),
                    StrMethod::Contains => Value::Bool(s.contains(arg_str())),
                    StrMethod::StartsWith => Value::Bool(s.starts_with(arg_str())),
                    StrMethod::EndsWith => Value::Bool(s.ends_with(arg_str())),
                    StrMethod::Lower => Value::Str(s.to_lowercase()),
                    StrMethod::Upper => Value::Str(s.to_uppercase()),
                    StrMethod::Trim => Value::Str(s.trim().to_owned()),
                })
            }
        })
    }

    /// Evaluates a predicate: `true` only for `Bool(true)`.
    #[inline]
    pub fn holds(&self, env: &Env<'_>) -> Result<bool, EvalError> {
        Ok(matches!(self.eval(env)?.as_ref(), Value::Bool(true)))
    }

    #[inline]
    fn binary<'a>(
        &'a self,
        op: BinOp,
        l: &'a Scalar,
        r: &'a Scalar,
        env: &Env<'a>,
    ) -> Result<Value, EvalError> {
        // Logic short-circuits.
        if matches!(op, BinOp::And | BinOp::Or) {
            let left = l.holds(env)?;
            return Ok(Value::Bool(match op {
                BinOp::And => left && r.holds(env)?,
                _ => left || r.holds(env)?,
            }));
        }
        let a = l.eval(env)?;
        let b = r.eval(env)?;
        let (a, b) = (a.as_ref(), b.as_ref());
        let type_error = || EvalError::Type {
            op: op.symbol(),
            left: kind(a),
            right: kind(b),
        };
        let ordering = || match (a, b) {
            (Value::Int(x), Value::Int(y)) => Some(x.cmp(y)),
            (Value::Str(x), Value::Str(y)) => Some(x.cmp(y)),
            (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
            _ => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y),
                _ => None,
            },
        };
        use std::cmp::Ordering::*;
        Ok(match op {
            BinOp::Eq => Value::Bool(ordering() == Some(Equal)),
            BinOp::Ne => Value::Bool(ordering() != Some(Equal)),
            BinOp::Lt | BinOp::Gt | BinOp::Le | BinOp::Ge => {
                let o = ordering().ok_or_else(type_error)?;
                Value::Bool(match op {
                    BinOp::Lt => o == Less,
                    BinOp::Gt => o == Greater,
                    BinOp::Le => o != Greater,
                    _ => o != Less,
                })
            }
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Rem => match (a, b) {
                (Value::Int(x), Value::Int(y)) => {
                    let (x, y) = (*x, *y);
                    if matches!(op, BinOp::Div | BinOp::Rem) && y == 0 {
                        return Err(EvalError::DivisionByZero);
                    }
                    let result = match op {
                        BinOp::Add => x.checked_add(y),
                        BinOp::Sub => x.checked_sub(y),
                        BinOp::Mul => x.checked_mul(y),
                        BinOp::Div => x.checked_div(y),
                        _ => x.checked_rem(y),
                    };
                    Value::Int(result.ok_or(EvalError::Overflow(op.symbol()))?)
                }
                (Value::Str(x), Value::Str(y)) if op == BinOp::Add => Value::Str(format!("{x}{y}")),
                _ => {
                    let (x, y) = a.as_f64().zip(b.as_f64()).ok_or_else(type_error)?;
                    Value::Float(match op {
                        BinOp::Add => x + y,
                        BinOp::Sub => x - y,
                        BinOp::Mul => x * y,
                        BinOp::Div => x / y,
                        _ => x % y,
                    })
                }
            },
            BinOp::And | BinOp::Or => unreachable!("handled above"),
        })
    }
}

/// One step of a stream pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Step {
    /// Keep the elements for which the predicate holds.
    Filter(Scalar),
    /// Replace each element by the expression's value.
    Map(Scalar),
}

/// Filters and maps applied to a stream's records, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// The steps.
    pub steps: Vec<Step>,
}

/// The element a pipeline yields for one record.
#[derive(Debug)]
pub enum Element<'a> {
    /// The record itself (no `map` ran).
    Record(&'a [Value]),
    /// A mapped value.
    Value(Cow<'a, Value>),
}

impl Pipeline {
    /// The expressions of its steps.
    pub fn scalars(&self) -> impl Iterator<Item = &Scalar> {
        self.steps.iter().map(|s| match s {
            Step::Filter(e) | Step::Map(e) => e,
        })
    }

    /// Runs the pipeline over one record: `None` if a filter dropped it.
    #[inline]
    pub fn run<'a>(&'a self, record: &'a [Value]) -> Result<Option<Element<'a>>, EvalError> {
        let mut element = Element::Record(record);
        for step in &self.steps {
            let env = match &element {
                Element::Record(r) => Env::record(r),
                Element::Value(v) => Env {
                    record: &[],
                    current: Some(v.as_ref()),
                    locals: &[],
                },
            };
            match step {
                Step::Filter(p) => {
                    if !p.holds(&env)? {
                        return Ok(None);
                    }
                }
                Step::Map(m) => {
                    // The mapped value may borrow the record, never the
                    // previous mapped value, which is about to be replaced.
                    let v = m.eval(&env)?.into_owned();
                    element = Element::Value(Cow::Owned(v));
                }
            }
        }
        Ok(Some(element))
    }
}
