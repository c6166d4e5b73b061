//! The homomorphic lane's programmable path, as operators see it: a stored
//! dataset's restricted records rest as TFHE integer ciphertexts (one
//! compact list of `FheInt64` per record, `symbiont_crypto::programmable`),
//! and a later program's aggregates over them are compiled into a
//! [`Spec`] the compute stage evaluates under encryption.
//!
//! - [`encrypted_fields`] and [`record_values`] (persisting, the data
//!   owner): which fields a record keeps encrypted — its `int`, `float`
//!   (fixed point, [`FLOAT_SCALE`]) and `bool` (0 or 1) fields; `string`
//!   fields rest AES-sealed only.
//! - [`compile`] (planning): each aggregate's pipeline must be filters of
//!   the form `field >= c`, `field < c`, `field == c` (and `>`, `<=`, `&&`,
//!   which reduce to them), then at most a `map` to a field. Anything else
//!   is refused before the job runs, naming the aggregate.
//! - [`Compiled::partials`] (the key holder's side, after decryption):
//!   each aggregate's count and value as the [`Partial`] the merge expects.

use serde::{Deserialize, Serialize};
use symbiont_crypto::programmable::{Aggregate, Comparison, Kind, Op, Spec};

use crate::expr::{BinOp, Scalar, Step};
use crate::homomorphic::FLOAT_SCALE;
use crate::partial::{Partial, TotalF64};
use crate::query::{AggKind, FieldType, Query, Schema};
use crate::value::Value;

/// The schema indices of the fields kept as TFHE ciphertexts, in the order
/// of a record's list.
pub fn encrypted_fields(schema: &Schema) -> Vec<usize> {
    schema
        .fields
        .iter()
        .enumerate()
        .filter(|(_, (_, ty))| *ty != FieldType::Str)
        .map(|(i, _)| i)
        .collect()
}

/// A restricted record's values in the order of [`encrypted_fields`].
pub fn record_values(schema: &Schema, record: &[Value]) -> Result<Vec<i64>, String> {
    encrypted_fields(schema)
        .into_iter()
        .map(|i| {
            let name = &schema.fields[i].0;
            match record.get(i) {
                Some(Value::Int(v)) => Ok(*v),
                Some(Value::Bool(b)) => Ok(i64::from(*b)),
                Some(Value::Float(f)) => {
                    let fixed = (f * FLOAT_SCALE).round();
                    if fixed.is_finite() && fixed.abs() < i64::MAX as f64 {
                        Ok(fixed as i64)
                    } else {
                        Err(format!("`{name}` is beyond the fixed-point range"))
                    }
                }
                _ => Err(format!("`{name}` has no value to encrypt")),
            }
        })
        .collect()
}

/// A query compiled for the programmable path.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Compiled {
    /// What the compute stage evaluates.
    pub spec: Spec,
    /// Per aggregate: its function and the type of the field it reads.
    outputs: Vec<(AggKind, Option<FieldType>)>,
}

/// Compiles `query`'s aggregates for the programmable path, or says which
/// one it cannot evaluate under encryption, and why.
pub fn compile(query: &Query) -> Result<Compiled, String> {
    if query.grouping.is_some() {
        return Err(
            "group_by over restricted records at rest: the programmable path computes ungrouped aggregates only"
                .into(),
        );
    }
    let slots = encrypted_fields(&query.schema);
    let mut spec = Spec::default();
    let mut outputs = Vec::new();
    for a in &query.aggregates {
        let refuse = |why: &str| {
            format!(
                "`{}` over restricted records at rest: {why} (the programmable path evaluates filters `field >= c`, `field < c`, `field == c`, `>`, `<=` and `&&` of them, then a `map` to a field)",
                a.label
            )
        };
        let mut filters = Vec::new();
        let mut field = None;
        for step in &a.pipeline.steps {
            match (step, field) {
                (Step::Filter(predicate), None) => {
                    let mut comparisons = Vec::new();
                    conjuncts(predicate, &query.schema, &slots, &mut comparisons)
                        .map_err(|why| refuse(&why))?;
                    for c in comparisons {
                        let i = match spec.comparisons.iter().position(|x| *x == c) {
                            Some(i) => i,
                            None => {
                                spec.comparisons.push(c);
                                spec.comparisons.len() - 1
                            }
                        };
                        if !filters.contains(&i) {
                            filters.push(i);
                        }
                    }
                }
                (Step::Map(Scalar::Field(i)), None) => field = Some(*i),
                (Step::Map(_), None) => {
                    return Err(refuse("its map computes an expression"));
                }
                (_, Some(_)) => return Err(refuse("a step follows its map")),
            }
        }
        let ty = field.map(|i| query.schema.fields[i].1);
        let kind = match (a.kind, ty) {
            (AggKind::Count, _) => Kind::Count,
            (_, Some(FieldType::Int | FieldType::Float)) => match a.kind {
                AggKind::Sum | AggKind::Avg => Kind::Sum,
                AggKind::Min => Kind::Min,
                _ => Kind::Max,
            },
            _ => return Err(refuse("it does not read an int or float field")),
        };
        let slot = match kind {
            Kind::Count => None,
            _ => field.and_then(|i| slots.iter().position(|s| *s == i)),
        };
        spec.aggregates.push(Aggregate {
            kind,
            filters,
            slot,
        });
        outputs.push((a.kind, ty));
    }
    Ok(Compiled { spec, outputs })
}

/// Adds the comparisons whose conjunction `predicate` is.
fn conjuncts(
    predicate: &Scalar,
    schema: &Schema,
    slots: &[usize],
    out: &mut Vec<Comparison>,
) -> Result<(), String> {
    match predicate {
        Scalar::Binary(BinOp::And, l, r) => {
            conjuncts(l, schema, slots, out)?;
            conjuncts(r, schema, slots, out)
        }
        Scalar::Binary(BinOp::Or, _, _) => {
            Err("a filter is not a conjunction of comparisons (it has `||`)".into())
        }
        Scalar::Binary(op, l, r) => {
            let (field, constant, op) = match (l.as_ref(), r.as_ref()) {
                (Scalar::Field(i), c) if constant_of(c).is_some() => {
                    (*i, constant_of(c).expect("checked"), *op)
                }
                (c, Scalar::Field(i)) if constant_of(c).is_some() => {
                    (*i, constant_of(c).expect("checked"), mirror(*op)?)
                }
                _ => {
                    return Err(
                        "a filter compares something other than a field and a constant".into(),
                    );
                }
            };
            let constant = &constant;
            let (name, ty) = &schema.fields[field];
            let slot = slots
                .iter()
                .position(|s| *s == field)
                .ok_or_else(|| format!("`{name}` is a string, stored AES-sealed only"))?;
            // The constant on the field's scale, rounded up: for values on
            // that scale `x >= c` is `x >= ceil(c)` and `x < c` is
            // `x < ceil(c)`.
            let scaled = match (ty, constant) {
                (FieldType::Int, Value::Int(c)) => *c as f64,
                (FieldType::Int, Value::Float(c)) => *c,
                (FieldType::Float, Value::Int(c)) => *c as f64 * FLOAT_SCALE,
                (FieldType::Float, Value::Float(c)) => c * FLOAT_SCALE,
                (FieldType::Bool, Value::Bool(b)) => f64::from(u8::from(*b)),
                _ => {
                    return Err(format!(
                        "`{name}` is compared with a constant of another type"
                    ));
                }
            };
            // 0.1 * 10^4 is 1000.0000000000001: a constant within float
            // error of the scale's grid is on it.
            let scaled = if (scaled - scaled.round()).abs() < 1e-6 {
                scaled.round()
            } else {
                scaled
            };
            let ceil = scaled.ceil();
            if !ceil.is_finite() || ceil.abs() >= (1u64 << 62) as f64 {
                return Err(format!(
                    "the constant `{name}` is compared with is out of range"
                ));
            }
            let c = ceil as i64;
            let comparison = |op, constant| Comparison { slot, op, constant };
            match op {
                BinOp::Ge => out.push(comparison(Op::Ge, c)),
                BinOp::Lt => out.push(comparison(Op::Lt, c)),
                // x > c is x >= floor(c) + 1; x <= c is x < floor(c) + 1.
                BinOp::Gt => out.push(comparison(Op::Ge, scaled.floor() as i64 + 1)),
                BinOp::Le => out.push(comparison(Op::Lt, scaled.floor() as i64 + 1)),
                BinOp::Eq if ceil == scaled => out.push(comparison(Op::Eq, c)),
                BinOp::Eq => {
                    return Err(format!(
                        "`{name}` is compared for equality with a constant finer than its fixed-point scale"
                    ));
                }
                _ => {
                    return Err(format!(
                        "`{}` is not a comparison it evaluates",
                        op.symbol()
                    ));
                }
            }
            Ok(())
        }
        Scalar::Field(i) if schema.fields[*i].1 == FieldType::Bool => {
            let slot = slots
                .iter()
                .position(|s| s == i)
                .expect("bools are encrypted");
            out.push(Comparison {
                slot,
                op: Op::Eq,
                constant: 1,
            });
            Ok(())
        }
        _ => Err("a filter is not a conjunction of comparisons".into()),
    }
}

/// The value of a constant expression: a literal, or a signed one
/// (`-312` is `-` applied to `312`).
fn constant_of(s: &Scalar) -> Option<Value> {
    match s {
        Scalar::Const(v) => Some(v.clone()),
        Scalar::Unary(crate::expr::UnOp::Plus, x) => constant_of(x),
        Scalar::Unary(crate::expr::UnOp::Neg, x) => match constant_of(x)? {
            Value::Int(i) => i.checked_neg().map(Value::Int),
            Value::Float(f) => Some(Value::Float(-f)),
            _ => None,
        },
        _ => None,
    }
}

/// `c op x` as `x op' c`.
fn mirror(op: BinOp) -> Result<BinOp, String> {
    Ok(match op {
        BinOp::Ge => BinOp::Le,
        BinOp::Le => BinOp::Ge,
        BinOp::Gt => BinOp::Lt,
        BinOp::Lt => BinOp::Gt,
        BinOp::Eq => BinOp::Eq,
        other => {
            return Err(format!(
                "`{}` is not a comparison it evaluates",
                other.symbol()
            ));
        }
    })
}

impl Compiled {
    /// The key holder's decrypted (count, value) per aggregate as partials
    /// of the homomorphic lane, aggregate index first.
    pub fn partials(
        &self,
        decrypted: &[(i64, Option<i64>)],
    ) -> Result<Vec<(u32, Partial)>, String> {
        if decrypted.len() != self.outputs.len() {
            return Err(format!(
                "{} results for {} aggregates",
                decrypted.len(),
                self.outputs.len()
            ));
        }
        let mut out = Vec::new();
        for (i, ((kind, ty), (count, value))) in self.outputs.iter().zip(decrypted).enumerate() {
            let mut p = Partial {
                count: *count,
                ..Partial::default()
            };
            let as_value = |v: i64| match ty {
                Some(FieldType::Float) => Value::Float(v as f64 / FLOAT_SCALE),
                _ => Value::Int(v),
            };
            match (kind, value) {
                (AggKind::Count, _) | (_, None) => {}
                (AggKind::Sum | AggKind::Avg, Some(v)) => match ty {
                    Some(FieldType::Float) => {
                        p.float_sum = TotalF64(*v as f64 / FLOAT_SCALE);
                        p.floats = *count;
                    }
                    _ => p.int_sum = i128::from(*v),
                },
                (AggKind::Min, Some(v)) if *count > 0 => p.min = Some(as_value(*v)),
                (AggKind::Max, Some(v)) if *count > 0 => p.max = Some(as_value(*v)),
                (AggKind::Min | AggKind::Max, Some(_)) => {}
            }
            out.push((i as u32, p));
        }
        Ok(out)
    }
}
