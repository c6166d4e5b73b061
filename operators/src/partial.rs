//! Partial aggregates: what each lane and worker computes, merged by
//! differential dataflow's consolidation (a commutative semigroup), then
//! finished into the values of `count`, `sum`, `avg`, `min` and `max`.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use differential_dataflow::difference::{IsZero, Semigroup};
use serde::{Deserialize, Serialize};

use crate::query::{AggKind, OutExpr, Output, Query};
use crate::value::Value;

/// A float ordered by `total_cmp`, so partials can be differential data.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct TotalF64(pub f64);

impl PartialEq for TotalF64 {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for TotalF64 {}
impl PartialOrd for TotalF64 {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for TotalF64 {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// The running state of one aggregate over some records.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Partial {
    /// Elements seen.
    pub count: i64,
    /// Sum of the integer elements (wide, so partial sums cannot wrap; the
    /// final sum must fit in 64 bits).
    pub int_sum: i128,
    /// Sum of the float elements.
    pub float_sum: TotalF64,
    /// How many elements were floats.
    pub floats: i64,
    /// Smallest element.
    pub min: Option<Value>,
    /// Largest element.
    pub max: Option<Value>,
}

impl Partial {
    /// The partial of one element. `track_extremes` keeps min and max
    /// (only `min`/`max` need them, and they cost a clone).
    pub fn of(value: Option<&Value>, track_extremes: bool) -> Partial {
        let mut p = Partial::default();
        p.add(value, track_extremes);
        p
    }

    /// Adds one element (`None`: an element with no value, as for `count`).
    pub fn add(&mut self, value: Option<&Value>, track_extremes: bool) {
        self.count += 1;
        match value {
            Some(Value::Int(i)) => self.int_sum += i128::from(*i),
            Some(Value::Float(f)) => {
                self.float_sum.0 += f;
                self.floats += 1;
            }
            _ => {}
        }
        if let (Some(v), true) = (value, track_extremes) {
            if self.min.as_ref().is_none_or(|m| v < m) {
                self.min = Some(v.clone());
            }
            if self.max.as_ref().is_none_or(|m| v > m) {
                self.max = Some(v.clone());
            }
        }
    }

    /// The aggregate's value.
    pub fn finish(&self, kind: AggKind) -> Result<Value, AggregateError> {
        Ok(match kind {
            AggKind::Count => Value::Int(self.count),
            AggKind::Sum => self.sum()?,
            AggKind::Avg if self.count == 0 => Value::Null,
            AggKind::Avg => {
                Value::Float((self.int_sum as f64 + self.float_sum.0) / self.count as f64)
            }
            AggKind::Min => self.min.clone().unwrap_or(Value::Null),
            AggKind::Max => self.max.clone().unwrap_or(Value::Null),
        })
    }

    fn sum(&self) -> Result<Value, AggregateError> {
        if self.floats > 0 {
            return Ok(Value::Float(self.int_sum as f64 + self.float_sum.0));
        }
        i64::try_from(self.int_sum)
            .map(Value::Int)
            .map_err(|_| AggregateError::SumOverflow)
    }
}

impl IsZero for Partial {
    /// Nothing at all: a partial that counts no record may still carry a
    /// sum (the homomorphic lane decrypts a column's sum apart from its
    /// count), and consolidation must keep it.
    fn is_zero(&self) -> bool {
        self.count == 0
            && self.int_sum == 0
            && self.float_sum.0 == 0.0
            && self.floats == 0
            && self.min.is_none()
            && self.max.is_none()
    }
}

impl Semigroup for Partial {
    fn plus_equals(&mut self, rhs: &Self) {
        self.count += rhs.count;
        self.int_sum += rhs.int_sum;
        self.float_sum.0 += rhs.float_sum.0;
        self.floats += rhs.floats;
        if let Some(m) = &rhs.min
            && self.min.as_ref().is_none_or(|s| m < s)
        {
            self.min = Some(m.clone());
        }
        if let Some(m) = &rhs.max
            && self.max.as_ref().is_none_or(|s| m > s)
        {
            self.max = Some(m.clone());
        }
    }
}

/// Why a result could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AggregateError {
    /// An integer sum left the 64-bit range.
    #[error("an integer sum does not fit in 64 bits")]
    SumOverflow,
    /// Arithmetic on aggregates failed.
    #[error("{0}")]
    Eval(#[from] crate::expr::EvalError),
}

/// Partials merged across lanes, by aggregate and group key.
pub type Merged = BTreeMap<(usize, Value), Partial>;

/// Builds the result value (as JSON) from merged partials. Groups are
/// every key seen by the grouping, in key order.
pub fn assemble(
    query: &Query,
    merged: &Merged,
    groups: &[Value],
) -> Result<serde_json::Value, AggregateError> {
    match &query.output {
        Output::Groups(inner) => groups
            .iter()
            .map(|key| shape(query, inner, merged, key))
            .collect::<Result<Vec<_>, _>>()
            .map(serde_json::Value::Array),
        output => shape(query, output, merged, &Value::Null),
    }
}

fn shape(
    query: &Query,
    output: &Output,
    merged: &Merged,
    key: &Value,
) -> Result<serde_json::Value, AggregateError> {
    Ok(match output {
        Output::Scalar(e) => value(query, e, merged, key)?.to_json(),
        Output::Struct { fields, .. } => {
            let mut object = serde_json::Map::new();
            for (name, e) in fields {
                object.insert(name.clone(), value(query, e, merged, key)?.to_json());
            }
            serde_json::Value::Object(object)
        }
        Output::Groups(inner) => shape(query, inner, merged, key)?,
    })
}

fn value(
    query: &Query,
    e: &OutExpr,
    merged: &Merged,
    key: &Value,
) -> Result<Value, AggregateError> {
    use crate::expr::{Env, Scalar};
    Ok(match e {
        OutExpr::Agg(i) => {
            let empty = Partial::default();
            let partial = merged.get(&(*i, key.clone())).unwrap_or(&empty);
            partial.finish(query.aggregates[*i].kind)?
        }
        OutExpr::Key => key.clone(),
        OutExpr::Const(v) => v.clone(),
        OutExpr::Unary(op, x) => {
            let x = value(query, x, merged, key)?;
            Scalar::Unary(*op, Box::new(Scalar::Const(x)))
                .eval(&Env::record(&[]))?
                .into_owned()
        }
        OutExpr::Binary(op, l, r) => {
            let (l, r) = (value(query, l, merged, key)?, value(query, r, merged, key)?);
            Scalar::Binary(*op, Box::new(Scalar::Const(l)), Box::new(Scalar::Const(r)))
                .eval(&Env::record(&[]))?
                .into_owned()
        }
    })
}
