//! What a proof attests: a [`Statement`] — counts and sums of committed
//! records, each behind filters that compare a field against a public
//! threshold — and the general circuit that proves one over a chunk.
//!
//! Records have `fields` attested `u32` values each (committed as in
//! [`crate::commit`]). A [`Comparison`] is `field >= t`, `field < t` or
//! `field == t`; an [`Aggregate`] counts the records that pass all its
//! filters, and for [`Kind::Sum`] also sums one field over them (so `avg`
//! is a sum and a count). Group-by sums over a public key domain are
//! `field == key` filters, one aggregate per key.
//!
//! Public inputs, in order ([`public_inputs`]): the chunk's commitment, its
//! record count, every comparison's threshold, then per aggregate its count
//! and, for a sum, its sum. The verifier supplies the thresholds, so a
//! proof for `age >= 65` does not verify as one for `age >= 60`.
//!
//! The circuit ([`StatementCircuit`]) decomposes every value into its
//! field's width, 32 bits unless the field's type declares a range
//! ([`Statement::widths`]; so the packed elements it hashes are exactly the
//! owner's, and the values within their widths), marks the chunk's first
//! `count` records as real (the rest is padding and never counted), and
//! decides `v >= t` from the top bit of the `w + 1`-bit number
//! `v - t + 2^w`, and `v == t` from whether `v - t` has an inverse. A
//! record costs `Σ w + (w + 2)·(>= and <) + 2·(==) + 2` plus one
//! constraint per filter and per sum, and the hash `969 / (192 / fields)`.
//! When every comparison is on one field, the interval circuit
//! ([`crate::intervals`]) proves the same statement far more cheaply.
//! The plain count-and-sum of one field has a far cheaper circuit
//! ([`crate::sum`]); [`Statement::lanes`] says when it applies.

use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::FieldVar;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};
use serde::{Deserialize, Serialize};

use crate::Fr;
use crate::commit::{LANE_BITS, LANES};
use crate::poseidon;

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// `>=`
    #[serde(rename = ">=")]
    Ge,
    /// `<`
    #[serde(rename = "<")]
    Lt,
    /// `==`
    #[serde(rename = "==")]
    Eq,
}

/// `field op threshold`; the threshold is a public input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Comparison {
    /// The attested field (its index in a record).
    pub field: usize,
    /// The operator.
    pub op: Op,
    /// The threshold (below 2^32).
    pub threshold: u32,
}

impl Comparison {
    /// Whether `v` passes.
    pub fn holds(&self, v: u32) -> bool {
        match self.op {
            Op::Ge => v >= self.threshold,
            Op::Lt => v < self.threshold,
            Op::Eq => v == self.threshold,
        }
    }
}

/// What an aggregate computes over the records that pass its filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Their count.
    Count,
    /// Their count and the sum of a field.
    Sum(usize),
}

/// One attested aggregate.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Aggregate {
    /// What it computes.
    pub kind: Kind,
    /// The comparisons (indices into [`Statement::comparisons`]) a record
    /// must all pass.
    pub filters: Vec<usize>,
}

/// Aggregates over records of `fields` attested values.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// Attested values per record.
    pub fields: usize,
    /// The distinct comparisons.
    pub comparisons: Vec<Comparison>,
    /// The aggregates.
    pub aggregates: Vec<Aggregate>,
    /// Per field, the bits its values have (`1..=32`): from a range the
    /// field's type declares, widened to hold every threshold it is
    /// compared with. Empty: 32 for every field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub widths: Vec<u32>,
}

impl Statement {
    /// Whether the lane-sum circuit ([`crate::sum`]) proves it: one field,
    /// no filters.
    pub fn lanes(&self) -> bool {
        self.fields == 1 && self.comparisons.is_empty()
    }

    /// The bits of field `f`'s values ([`Statement::widths`]).
    pub fn width(&self, f: usize) -> u32 {
        self.widths.get(f).copied().unwrap_or(32)
    }

    /// Whether the statement is well formed: indices in range, a field,
    /// widths of 1 to 32 bits that hold every threshold.
    pub fn check(&self) -> Result<(), String> {
        if self.fields == 0 {
            return Err("a statement attests at least one field".into());
        }
        if !self.widths.is_empty()
            && (self.widths.len() != self.fields
                || self.widths.iter().any(|w| !(1..=32).contains(w)))
        {
            return Err(format!(
                "widths {:?} for {} fields",
                self.widths, self.fields
            ));
        }
        if let Some(c) = self
            .comparisons
            .iter()
            .find(|c| c.field < self.fields && u64::from(c.threshold) > 1u64 << self.width(c.field))
        {
            return Err(format!(
                "threshold {} of field {}, whose values have {} bits",
                c.threshold,
                c.field,
                self.width(c.field)
            ));
        }
        for c in &self.comparisons {
            if c.field >= self.fields {
                return Err(format!(
                    "comparison of field {} of {}",
                    c.field, self.fields
                ));
            }
        }
        for a in &self.aggregates {
            if let Kind::Sum(f) = a.kind
                && f >= self.fields
            {
                return Err(format!("sum of field {f} of {}", self.fields));
            }
            if let Some(i) = a.filters.iter().find(|i| **i >= self.comparisons.len()) {
                return Err(format!("filter {i} of {}", self.comparisons.len()));
            }
        }
        Ok(())
    }

    /// Where each aggregate's outputs start (its count; a sum follows).
    pub fn offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.aggregates
            .iter()
            .map(|a| {
                let start = at;
                at += if a.kind == Kind::Count { 1 } else { 2 };
                start
            })
            .collect()
    }

    /// The aggregate whose count is output `output`.
    pub fn aggregate_at(&self, output: usize) -> Option<&Aggregate> {
        let i = self.offsets().iter().position(|o| *o == output)?;
        self.aggregates.get(i)
    }

    /// Outputs per chunk: a count per aggregate and a sum per sum.
    pub fn output_len(&self) -> usize {
        self.aggregates
            .iter()
            .map(|a| match a.kind {
                Kind::Count => 1,
                Kind::Sum(_) => 2,
            })
            .sum()
    }
}

/// The native reference: per aggregate its count and, for a sum, its sum,
/// over `values` (`fields` per record), in [`Statement::output_len`] order.
pub fn reference(statement: &Statement, values: &[u32]) -> Vec<u64> {
    let mut out = Vec::with_capacity(statement.output_len());
    for a in &statement.aggregates {
        let passing = values.chunks(statement.fields).filter(|record| {
            a.filters.iter().all(|f| {
                let c = &statement.comparisons[*f];
                c.holds(record[c.field])
            })
        });
        match a.kind {
            Kind::Count => out.push(passing.count() as u64),
            Kind::Sum(field) => {
                let (count, sum) =
                    passing.fold((0u64, 0u64), |(n, s), r| (n + 1, s + u64::from(r[field])));
                out.extend([count, sum]);
            }
        }
    }
    out
}

/// A chunk's public inputs, in the circuit's order.
pub fn public_inputs(
    statement: &Statement,
    commitment: Fr,
    records: u64,
    outputs: &[u64],
) -> Vec<Fr> {
    let mut p = vec![commitment, Fr::from(records)];
    p.extend(statement.comparisons.iter().map(|c| Fr::from(c.threshold)));
    p.extend(outputs.iter().map(|o| Fr::from(*o)));
    p
}

/// "Seniors": the count of records whose field 0 is at least 65 and the
/// sum of their field 1 (a test statement).
#[cfg(test)]
pub(crate) fn seniors() -> Statement {
    Statement {
        fields: 2,
        comparisons: vec![Comparison {
            field: 0,
            op: Op::Ge,
            threshold: 65,
        }],
        aggregates: vec![Aggregate {
            kind: Kind::Sum(1),
            filters: vec![0],
        }],
        widths: Vec::new(),
    }
}

/// The general circuit over one chunk.
#[derive(Clone, Debug)]
pub struct StatementCircuit {
    /// What it proves.
    pub statement: Statement,
    /// Records the shape holds.
    pub capacity: usize,
    /// The witness: salt and values (`None` for setup).
    pub witness: Option<(Fr, Vec<u32>)>,
    /// The public inputs ([`public_inputs`]; `None` for setup).
    pub public: Option<Vec<Fr>>,
}

impl StatementCircuit {
    /// The shape only, for setup (thresholds are public inputs, so one
    /// key serves any thresholds).
    pub fn shape(statement: Statement, capacity: usize) -> StatementCircuit {
        StatementCircuit {
            statement,
            capacity,
            witness: None,
            public: None,
        }
    }

    /// A chunk to prove, its public inputs those of the native reference.
    pub fn chunk(
        statement: Statement,
        capacity: usize,
        salt: Fr,
        values: Vec<u32>,
    ) -> StatementCircuit {
        let records = values.len() / statement.fields;
        let commitment = crate::commit::commit(salt, &values, statement.fields, capacity);
        let outputs = reference(&statement, &values);
        let public = public_inputs(&statement, commitment, records as u64, &outputs);
        StatementCircuit {
            statement,
            capacity,
            witness: Some((salt, values)),
            public: Some(public),
        }
    }
}

/// The public inputs of `statement`'s circuits ([`public_inputs`]) as
/// input variables; `public` is `None` for setup, and of the wrong length
/// unsatisfiable.
pub(crate) fn public_vars(
    cs: &ConstraintSystemRef<Fr>,
    statement: &Statement,
    public: Option<&[Fr]>,
) -> Result<Vec<FpVar<Fr>>, SynthesisError> {
    let expected = 2 + statement.comparisons.len() + statement.output_len();
    if public.is_some_and(|p| p.len() != expected) {
        return Err(SynthesisError::Unsatisfiable);
    }
    (0..expected)
        .map(|i| {
            FpVar::new_input(cs.clone(), || {
                public
                    .map(|p| p[i])
                    .ok_or(SynthesisError::AssignmentMissing)
            })
        })
        .collect()
}

/// One mark per record slot, the first `count` of them set: the marks
/// never rise again (`mark · (1 - previous) = 0`) and add up to `count`,
/// so padding is never counted. `records` is the witness's count.
pub(crate) fn real_marks(
    cs: &ConstraintSystemRef<Fr>,
    slots: usize,
    records: Option<usize>,
    count: &FpVar<Fr>,
) -> Result<Vec<Boolean<Fr>>, SynthesisError> {
    let mut real: Vec<Boolean<Fr>> = Vec::with_capacity(slots);
    for r in 0..slots {
        let mark = Boolean::new_witness(cs.clone(), || {
            records
                .map(|n| r < n)
                .ok_or(SynthesisError::AssignmentMissing)
        })?;
        if let Some(previous) = real.last() {
            FpVar::from(mark.clone()).mul_equals(
                &(FpVar::one() - FpVar::from(previous.clone())),
                &FpVar::zero(),
            )?;
        }
        real.push(mark);
    }
    real.iter()
        .map(|m| FpVar::from(m.clone()))
        .sum::<FpVar<Fr>>()
        .enforce_equal(count)?;
    Ok(real)
}

/// `bits` little-endian bits of `v` as witnesses.
pub(crate) fn bits_of(
    cs: &ConstraintSystemRef<Fr>,
    v: Option<u64>,
    bits: usize,
) -> Result<Vec<Boolean<Fr>>, SynthesisError> {
    (0..bits)
        .map(|b| {
            Boolean::new_witness(cs.clone(), || {
                v.map(|v| (v >> b) & 1 == 1)
                    .ok_or(SynthesisError::AssignmentMissing)
            })
        })
        .collect()
}

impl ConstraintSynthesizer<Fr> for StatementCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let st = &self.statement;
        let missing = || SynthesisError::AssignmentMissing;
        let public = public_vars(&cs, st, self.public.as_deref())?;
        let (commitment, count) = (&public[0], &public[1]);
        let thresholds = &public[2..2 + st.comparisons.len()];
        let outputs = &public[2 + st.comparisons.len()..];
        let values = self.witness.as_ref().map(|w| &w.1);
        let records = values.map(|v| v.len() / st.fields);
        let value = |r: usize, f: usize| -> Option<u32> {
            values.map(|v| v.get(r * st.fields + f).copied().unwrap_or(0))
        };

        // Every value as 32 bits; the packed elements from them.
        let mut fields: Vec<Vec<FpVar<Fr>>> = Vec::with_capacity(self.capacity);
        let mut flat: Vec<FpVar<Fr>> = Vec::with_capacity(self.capacity * st.fields);
        for r in 0..self.capacity {
            let mut record = Vec::with_capacity(st.fields);
            for f in 0..st.fields {
                let bits = bits_of(&cs, value(r, f).map(u64::from), st.width(f) as usize)?;
                let v = Boolean::le_bits_to_fp(&bits)?;
                flat.push(v.clone());
                record.push(v);
            }
            fields.push(record);
        }
        let shift = Fr::from(1u64 << LANE_BITS);
        let elements: Vec<FpVar<Fr>> = flat
            .chunks(LANES)
            .map(|lanes| {
                let mut scale = Fr::from(1u64);
                let mut terms = Vec::with_capacity(LANES);
                for v in lanes {
                    terms.push(v * scale);
                    scale *= shift;
                }
                terms.iter().sum()
            })
            .collect();
        let salt = FpVar::new_witness(cs.clone(), || {
            self.witness.as_ref().map(|w| w.0).ok_or_else(missing)
        })?;
        let mut absorbed = vec![salt];
        absorbed.extend(elements);
        absorbed.push(count.clone());
        poseidon::hash_var(cs.clone(), &absorbed)?.enforce_equal(commitment)?;

        let real = real_marks(&cs, self.capacity, records, count)?;

        // `v >= t`: the top bit of v - t + 2^w (w + 1 bits, w the field's
        // width; the statement's check keeps t <= 2^w).
        let ge = |r: usize, c: &crate::statement::Comparison, t: &FpVar<Fr>| {
            let w = st.width(c.field) as usize;
            let native = value(r, c.field)
                .map(|v| (u64::from(v) + (1u64 << w)).wrapping_sub(u64::from(c.threshold)));
            let bits = bits_of(&cs, native, w + 1)?;
            let d = &fields[r][c.field] - t + Fr::from(1u64 << w);
            Boolean::le_bits_to_fp(&bits)?.enforce_equal(&d)?;
            Ok::<_, SynthesisError>(bits[w].clone())
        };
        let mut passes: Vec<Vec<Boolean<Fr>>> = vec![Vec::new(); self.capacity];
        for (c, t) in st.comparisons.iter().zip(thresholds) {
            for (r, out) in passes.iter_mut().enumerate() {
                out.push(match c.op {
                    Op::Ge => ge(r, c, t)?,
                    Op::Lt => !ge(r, c, t)?,
                    // `v - t` is zero or has an inverse: two constraints.
                    Op::Eq => fields[r][c.field].is_eq(t)?,
                });
            }
        }

        let mut out = outputs.iter();
        for a in &st.aggregates {
            let mut counted = Vec::with_capacity(self.capacity);
            let mut summed = Vec::with_capacity(self.capacity);
            for r in 0..self.capacity {
                let mut selected = real[r].clone();
                for f in &a.filters {
                    selected &= &passes[r][*f];
                }
                let selected = FpVar::from(selected);
                if let Kind::Sum(field) = a.kind {
                    summed.push(&selected * &fields[r][field]);
                }
                counted.push(selected);
            }
            let count_out = out.next().ok_or(SynthesisError::Unsatisfiable)?;
            counted.iter().sum::<FpVar<Fr>>().enforce_equal(count_out)?;
            if let Kind::Sum(_) = a.kind {
                let sum_out = out.next().ok_or(SynthesisError::Unsatisfiable)?;
                summed.iter().sum::<FpVar<Fr>>().enforce_equal(sum_out)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use ark_relations::gr1cs::ConstraintSystem;

    use super::*;

    fn satisfied(circuit: StatementCircuit) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        circuit.generate_constraints(cs.clone()).unwrap();
        cs.is_satisfied().unwrap()
    }

    /// Age and cost: "seniors" (age >= 65) counted and their cost summed,
    /// children (age < 18) counted, 40-year-olds' cost summed, everyone
    /// counted.
    fn clinic() -> Statement {
        let c = |op, threshold| Comparison {
            field: 0,
            op,
            threshold,
        };
        Statement {
            fields: 2,
            comparisons: vec![c(Op::Ge, 65), c(Op::Lt, 18), c(Op::Eq, 40)],
            aggregates: vec![
                Aggregate {
                    kind: Kind::Count,
                    filters: vec![0],
                },
                Aggregate {
                    kind: Kind::Sum(1),
                    filters: vec![0],
                },
                Aggregate {
                    kind: Kind::Count,
                    filters: vec![1],
                },
                Aggregate {
                    kind: Kind::Sum(1),
                    filters: vec![2],
                },
                Aggregate {
                    kind: Kind::Count,
                    filters: vec![],
                },
            ],
            widths: Vec::new(),
        }
    }

    fn records() -> Vec<u32> {
        // (age, cost): the edges of every threshold, the largest cost.
        [
            (65, 10),
            (64, 20),
            (17, 30),
            (18, 40),
            (40, 50),
            (39, 60),
            (41, 70),
            (90, u32::MAX),
            (0, 0),
        ]
        .iter()
        .flat_map(|(a, c)| [*a, *c])
        .collect()
    }

    #[test]
    fn the_reference_counts_and_sums_behind_filters() {
        let out = reference(&clinic(), &records());
        // seniors: 65, 90; children: 17, 0; forty: 40.
        assert_eq!(out, vec![2, 2, 10 + u64::from(u32::MAX), 2, 1, 50, 9]);
    }

    #[test]
    fn an_honest_chunk_satisfies_the_constraints_with_padding() {
        // Capacity 12: three padding records, which `age < 18` would count.
        assert!(satisfied(StatementCircuit::chunk(
            clinic(),
            12,
            Fr::from(3u64),
            records()
        )));
    }

    #[test]
    fn a_wrong_output_threshold_count_or_commitment_does_not() {
        let honest = StatementCircuit::chunk(clinic(), 12, Fr::from(3u64), records());
        let public = honest.public.clone().unwrap();
        for i in 0..public.len() {
            let mut wrong = honest.clone();
            let mut p = public.clone();
            p[i] += Fr::from(1u64);
            wrong.public = Some(p);
            assert!(!satisfied(wrong), "public input {i}");
        }
    }

    #[test]
    fn a_witness_other_than_the_committed_values_does_not() {
        let honest = StatementCircuit::chunk(clinic(), 12, Fr::from(3u64), records());
        // Another age (65 -> 66 keeps every output) under the same public
        // inputs: the commitment no longer matches.
        let mut values = records();
        values[0] = 66;
        assert_eq!(
            reference(&clinic(), &values),
            reference(&clinic(), &records())
        );
        let wrong = StatementCircuit {
            witness: Some((Fr::from(3u64), values)),
            ..honest
        };
        assert!(!satisfied(wrong));
    }

    #[test]
    fn a_statement_with_out_of_range_indices_is_refused() {
        let mut s = clinic();
        s.aggregates[1].kind = Kind::Sum(2);
        assert!(s.check().is_err());
        let mut s = clinic();
        s.aggregates[0].filters = vec![3];
        assert!(s.check().is_err());
        assert!(clinic().check().is_ok());
    }
}
