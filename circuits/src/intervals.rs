//! The interval circuit: counts and sums behind filters, when every
//! comparison is on one field (the key), with the summed fields never
//! decomposed record by record.
//!
//! The owner sorts each chunk's records by the key before committing it
//! (order does not change a count or a sum), and commits the chunk column
//! by column ([`crate::commit::commit_columns`]): field 0's values packed
//! six to an element, then field 1's, and so on. In key order every
//! aggregate's filters (a conjunction of `>=`, `<` and `==` on the key)
//! select one interval of records, so every packed element of a column is
//! wholly selected, wholly not, or one of at most two elements at the
//! interval's ends. The circuit then
//!
//! - decomposes only the key: `v - t + 2^w` into `w + 1` bits per `>=` or
//!   `<` comparison, `w` the key's width (32, or what a declared range
//!   needs: [`Statement::widths`]); the top bit decides the comparison, and
//!   the decomposition bounds the key's lane, so the packed key elements
//!   open to exactly the owner's values;
//! - per aggregate's filter set, marks each element as wholly selected,
//!   wholly not, or one of two boundary slots, and checks the marks
//!   against the records' selections (two constraints per element);
//! - sums the wholly selected elements of a summed column lane by lane, as
//!   the lane-sum circuit does ([`crate::sum`]), decomposing the lane sums
//!   once per [`BLOCK`] elements, and adds the selected lanes of the (at
//!   most two) boundary elements, which alone are opened into 32-bit
//!   lanes.
//!
//! A record costs its share of the hash, two constraints for the "real"
//! marks, `w + 2` per `>=`/`<` comparison, one per filter, and about two
//! per summed field and filter set for the element marks — against the
//! general circuit's 32 (or the declared width) per field and `w + 2` per
//! comparison. A proof has the general circuit's public inputs
//! ([`crate::statement::public_inputs`]) and says the same of the key and
//! the outputs, about a commitment to the chunk in key order (a layout
//! the commitment is tagged with: [`crate::commit::commit_columns`]).
//! Unlike the general circuit, it reads a summed column as the owner packs
//! it, as the lane-sum circuit does: it does not check a summed field's
//! declared width (only the key's), and a lane of 2^32 or more — which no
//! `u32` packs to — is not refused.

use ark_ff::{BigInteger, PrimeField};
use ark_r1cs_std::GR1CSVar;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::FieldVar;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::Fr;
use crate::commit::{BLOCK, LANE_BITS, LANES, pack};
use crate::poseidon;
use crate::statement::{
    Aggregate, Kind, Op, Statement, bits_of, public_inputs, public_vars, real_marks, reference,
};

/// The evaluation domain a chunk's constraints should fit: 2^17 (twice
/// that proved no faster per record here, and takes twice the memory).
pub const DOMAIN: usize = 1 << 17;

/// Records per chunk for `statement`: the most (a multiple of six) whose
/// constraints, as [`constraints`] counts them ahead, fit [`DOMAIN`] —
/// 2,592 for `clinic_costs`' two fields and one comparison of 32-bit ages,
/// 5,052 with ages declared in `0..=150`.
pub fn capacity(statement: &Statement) -> usize {
    fitting(statement).unwrap_or(LANES)
}

/// The records that fit [`DOMAIN`], if any do.
fn fitting(statement: &Statement) -> Option<usize> {
    let (fixed, per_element) = constraints(statement);
    let budget = (DOMAIN - DOMAIN / 100).checked_sub(fixed)?;
    Some(budget / per_element * LANES)
}

/// Below this many records per chunk (a statement whose summed fields and
/// filter sets leave little of the domain), the chunk's fixed part would
/// dominate: the general circuit serves better.
pub const MIN_CHUNK: usize = 600;

/// The interval circuit's constraints, counted ahead: a chunk's fixed
/// part and the part per element of a column (six records), rounded up.
/// A test checks the count against synthesis.
pub fn constraints(statement: &Statement) -> (usize, usize) {
    let st = statement;
    let sets = filter_sets(st);
    let key = one_field(st).flatten();
    // Per six records: the hash (969 per 32 elements absorbed).
    let mut per_six = 969 * st.fields / 32 + 1;
    // The real marks and, with a key, its packing.
    per_six += 2 * LANES + usize::from(key.is_some());
    if let Some(k) = key {
        let w = st.width(k) as usize;
        let ordered = st.comparisons.iter().any(|c| c.op != Op::Eq);
        if !ordered {
            per_six += LANES * (w + 1);
        }
        for c in &st.comparisons {
            per_six += LANES * if c.op == Op::Eq { 2 } else { w + 2 };
        }
    }
    let mut fixed = 969 + 2 * st.fields + 8;
    for set in &sets {
        // The ANDs, the marks and the two slots' selected lanes.
        per_six += LANES * set.len() + 9;
        fixed += 2 * (2 + LANES + 1);
        let summed = st
            .aggregates
            .iter()
            .filter_map(|a| match a.kind {
                Kind::Sum(f) => (&filter_set(a) == set).then_some(f),
                Kind::Count => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // Per summed field: the wholly selected and two boundary products;
        // a block's lanes and the boundary elements opened.
        per_six += 3 * summed;
        fixed += summed * (LANE_BITS * LANES + 2 * (LANES * 33 + 1));
    }
    (fixed, per_six)
}

/// Filter sets a statement may have for this circuit: each costs about
/// two constraints per record and summed field, so a grouping with many
/// groups is cheaper in the general circuit.
pub const MAX_FILTER_SETS: usize = 8;

/// The field every comparison is on (`None` without comparisons), if the
/// statement suits this circuit: one field, at least one `>=` or `<` on
/// it (a statement of `==` alone is a grouping's, cheaper in the general
/// circuit, and committed before its groups are known), at most
/// [`MAX_FILTER_SETS`] filter sets, and chunks of at least [`MIN_CHUNK`].
pub fn key(statement: &Statement) -> Option<Option<usize>> {
    let key = one_field(statement)?;
    let ordered =
        statement.comparisons.is_empty() || statement.comparisons.iter().any(|c| c.op != Op::Eq);
    let suits = ordered
        && filter_sets(statement).len() <= MAX_FILTER_SETS
        && fitting(statement).is_some_and(|n| n >= MIN_CHUNK);
    suits.then_some(key)
}

/// The field every comparison is on (`None` without comparisons), or
/// `None` if they are on several.
fn one_field(statement: &Statement) -> Option<Option<usize>> {
    let mut fields = statement.comparisons.iter().map(|c| c.field);
    let key = fields.next();
    if fields.any(|f| Some(f) != key) {
        return None;
    }
    Some(key)
}

/// An aggregate's filters as a set: sorted, each once.
pub(crate) fn filter_set(aggregate: &Aggregate) -> Vec<usize> {
    let mut f = aggregate.filters.clone();
    f.sort_unstable();
    f.dedup();
    f
}

/// The distinct filter sets of the aggregates ([`filter_set`]), in order
/// of first use.
pub fn filter_sets(statement: &Statement) -> Vec<Vec<usize>> {
    let mut sets: Vec<Vec<usize>> = Vec::new();
    for a in &statement.aggregates {
        let f = filter_set(a);
        if !sets.contains(&f) {
            sets.push(f);
        }
    }
    sets
}

/// `values` (`fields` per record) in the order the owner commits them for
/// this circuit: sorted by the key (stably; unchanged without one).
pub fn key_order(statement: &Statement, values: &[u32]) -> Vec<u32> {
    let fields = statement.fields;
    let mut records: Vec<&[u32]> = values.chunks(fields).collect();
    if let Some(Some(k)) = key(statement) {
        records.sort_by_key(|r| r[k]);
    }
    records.concat()
}

/// The interval circuit over one chunk.
#[derive(Clone, Debug)]
pub struct IntervalCircuit {
    /// What it proves.
    pub statement: Statement,
    /// Records the shape holds.
    pub capacity: usize,
    /// The witness: salt and values in key order (`None` for setup).
    pub witness: Option<(Fr, Vec<u32>)>,
    /// The public inputs (`None` for setup).
    pub public: Option<Vec<Fr>>,
}

impl IntervalCircuit {
    /// The shape only, for setup.
    pub fn shape(statement: Statement, capacity: usize) -> IntervalCircuit {
        IntervalCircuit {
            statement,
            capacity,
            witness: None,
            public: None,
        }
    }

    /// A chunk to prove: `values` in key order ([`key_order`]).
    pub fn chunk(
        statement: Statement,
        capacity: usize,
        salt: Fr,
        values: Vec<u32>,
    ) -> IntervalCircuit {
        let records = values.len() / statement.fields;
        let commitment = crate::commit::commit_columns(salt, &values, statement.fields, capacity);
        let outputs = reference(&statement, &values);
        let public = public_inputs(&statement, commitment, records as u64, &outputs);
        IntervalCircuit {
            statement,
            capacity,
            witness: Some((salt, values)),
            public: Some(public),
        }
    }
}

/// How a filter set's selection meets one packed element.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    All,
    None,
    Boundary(usize),
}

/// The marks of `selected` (one bool per lane), or `None` if more than
/// two elements are mixed (the records were not in key order).
fn marks(selected: &[bool]) -> Option<Vec<Mark>> {
    let mut boundaries = 0;
    selected
        .chunks(LANES)
        .map(|lanes| {
            let n = lanes.iter().filter(|s| **s).count();
            if n == LANES {
                Some(Mark::All)
            } else if n == 0 {
                Some(Mark::None)
            } else {
                boundaries += 1;
                (boundaries <= 2).then_some(Mark::Boundary(boundaries - 1))
            }
        })
        .collect()
}

/// A boolean witness from an optional native value.
fn boolean(cs: &ConstraintSystemRef<Fr>, v: Option<bool>) -> Result<Boolean<Fr>, SynthesisError> {
    Boolean::new_witness(cs.clone(), || v.ok_or(SynthesisError::AssignmentMissing))
}

/// `a · b` as a new witness (one constraint).
fn product(a: &FpVar<Fr>, b: &FpVar<Fr>) -> Result<FpVar<Fr>, SynthesisError> {
    Ok(a * b)
}

impl ConstraintSynthesizer<Fr> for IntervalCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let st = &self.statement;
        let missing = || SynthesisError::AssignmentMissing;
        let key = key(st).ok_or(SynthesisError::Unsatisfiable)?;
        let public = public_vars(&cs, st, self.public.as_deref())?;
        let (commitment, count) = (&public[0], &public[1]);
        let thresholds = &public[2..2 + st.comparisons.len()];
        let outputs = &public[2 + st.comparisons.len()..];

        let values = self.witness.as_ref().map(|w| &w.1);
        let records = values.map(|v| v.len() / st.fields);
        let lanes = self.capacity.div_ceil(LANES) * LANES;
        let elements_per_column = lanes / LANES;
        let value = |r: usize, f: usize| -> Option<u32> {
            values.map(|v| v.get(r * st.fields + f).copied().unwrap_or(0))
        };
        let column = |f: usize| -> Option<Vec<u32>> {
            values.map(|_| (0..lanes).map(|r| value(r, f).unwrap_or(0)).collect())
        };

        // The column elements, hashed as the commitment.
        let mut columns: Vec<Vec<FpVar<Fr>>> = Vec::with_capacity(st.fields);
        for f in 0..st.fields {
            let native = column(f).map(|c| pack(&c, lanes));
            let elements = (0..elements_per_column)
                .map(|j| {
                    FpVar::new_witness(cs.clone(), || {
                        native.as_ref().map(|e| e[j]).ok_or_else(missing)
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            columns.push(elements);
        }
        let salt = FpVar::new_witness(cs.clone(), || {
            self.witness.as_ref().map(|w| w.0).ok_or_else(missing)
        })?;
        let mut absorbed = vec![salt];
        absorbed.extend(columns.iter().flatten().cloned());
        absorbed.push(count + crate::commit::columns_tag());
        poseidon::hash_var(cs.clone(), &absorbed)?.enforce_equal(commitment)?;

        // The first `count` records are real.
        let real = real_marks(&cs, lanes, records, count)?;

        // The key's lanes, bounded, and every comparison on them.
        let mut passes: Vec<Vec<Boolean<Fr>>> = vec![Vec::new(); st.comparisons.len()];
        if let Some(k) = key {
            let lane_vars: Vec<FpVar<Fr>> = (0..lanes)
                .map(|r| {
                    FpVar::new_witness(cs.clone(), || value(r, k).map(Fr::from).ok_or_else(missing))
                })
                .collect::<Result<_, _>>()?;
            let shift = Fr::from(1u64 << LANE_BITS);
            for (j, element) in columns[k].iter().enumerate() {
                let mut scale = Fr::from(1u64);
                let mut packed = FpVar::zero();
                for v in &lane_vars[j * LANES..(j + 1) * LANES] {
                    packed += v * scale;
                    scale *= shift;
                }
                packed.enforce_equal(element)?;
            }
            let w = st.width(k) as usize;
            let bounded_by_comparison = st.comparisons.iter().any(|c| c.op != Op::Eq);
            if !bounded_by_comparison {
                for (r, v) in lane_vars.iter().enumerate() {
                    let bits = bits_of(&cs, value(r, k).map(u64::from), w)?;
                    Boolean::le_bits_to_fp(&bits)?.enforce_equal(v)?;
                }
            }
            let two_w = Fr::from(1u64 << w);
            for ((c, t), out) in st.comparisons.iter().zip(thresholds).zip(&mut passes) {
                for (r, v) in lane_vars.iter().enumerate() {
                    out.push(match c.op {
                        Op::Eq => v.is_eq(t)?,
                        Op::Ge | Op::Lt => {
                            // v - t + 2^w in w + 1 bits (w the key's width,
                            // t <= 2^w): its top bit is v >= t.
                            let native = value(r, k).map(|v| {
                                (u64::from(v) + (1u64 << w)).wrapping_sub(u64::from(c.threshold))
                            });
                            let bits = bits_of(&cs, native, w + 1)?;
                            Boolean::le_bits_to_fp(&bits)?.enforce_equal(&(v - t + two_w))?;
                            if c.op == Op::Ge {
                                bits[w].clone()
                            } else {
                                !bits[w].clone()
                            }
                        }
                    });
                }
            }
        }

        // Per filter set: the records it selects, the elements' marks, its
        // count and its sums.
        let sets = filter_sets(st);
        let mut counts: Vec<FpVar<Fr>> = Vec::with_capacity(sets.len());
        let mut sums: Vec<Vec<(usize, FpVar<Fr>)>> = Vec::with_capacity(sets.len());
        for set in &sets {
            let mut selected = Vec::with_capacity(lanes);
            for r in 0..lanes {
                let mut s = real[r].clone();
                for f in set {
                    s &= &passes[*f][r];
                }
                selected.push(s);
            }
            let native_selected: Option<Vec<bool>> =
                selected.iter().map(|s| s.value().ok()).collect();
            let native_marks = match native_selected {
                Some(bits) => Some(marks(&bits).ok_or(SynthesisError::Unsatisfiable)?),
                None => None,
            };
            #[cfg(test)]
            let native_marks = native_marks.map(tests::cheat);
            let mark_is = |j: usize, m: Mark| native_marks.as_ref().map(|n| n[j] == m);
            let mut all = Vec::with_capacity(elements_per_column);
            let mut slots: [Vec<FpVar<Fr>>; 2] = [Vec::new(), Vec::new()];
            let mut picked_bits: [FpVar<Fr>; 2] = [FpVar::zero(), FpVar::zero()];
            for j in 0..elements_per_column {
                let lanes_selected: Vec<FpVar<Fr>> = selected[j * LANES..(j + 1) * LANES]
                    .iter()
                    .map(|s| FpVar::from(s.clone()))
                    .collect();
                let how_many: FpVar<Fr> = lanes_selected.iter().sum();
                let as_bits: FpVar<Fr> = lanes_selected
                    .iter()
                    .enumerate()
                    .map(|(i, s)| s * Fr::from(1u64 << i))
                    .sum();
                let m = FpVar::from(boolean(&cs, mark_is(j, Mark::All))?);
                let z = FpVar::from(boolean(&cs, mark_is(j, Mark::None))?);
                let b0 = FpVar::from(boolean(&cs, mark_is(j, Mark::Boundary(0)))?);
                let b1 = FpVar::from(boolean(&cs, mark_is(j, Mark::Boundary(1)))?);
                (&m + &z + &b0 + &b1).enforce_equal(&FpVar::one())?;
                // Wholly selected: six lanes selected; wholly not: none.
                m.mul_equals(
                    &(FpVar::constant(Fr::from(LANES as u64)) - &how_many),
                    &FpVar::zero(),
                )?;
                z.mul_equals(&how_many, &FpVar::zero())?;
                picked_bits[0] += product(&b0, &as_bits)?;
                picked_bits[1] += product(&b1, &as_bits)?;
                all.push(m);
                slots[0].push(b0);
                slots[1].push(b1);
            }
            // Each slot holds at most one element, and its selected lanes
            // as six bits.
            let mut slot_bits: Vec<Vec<Boolean<Fr>>> = Vec::with_capacity(2);
            for (k, slot) in slots.iter().enumerate() {
                let used = boolean(
                    &cs,
                    native_marks
                        .as_ref()
                        .map(|n| n.contains(&Mark::Boundary(k))),
                )?;
                slot.iter()
                    .sum::<FpVar<Fr>>()
                    .enforce_equal(&FpVar::from(used))?;
                let native = native_marks.as_ref().map(|n| {
                    n.iter()
                        .position(|m| *m == Mark::Boundary(k))
                        .map(|j| {
                            (0..LANES)
                                .map(|i| selected[j * LANES + i].value().unwrap_or(false))
                                .enumerate()
                                .map(|(i, s)| u64::from(s) << i)
                                .sum::<u64>()
                        })
                        .unwrap_or(0)
                });
                let bits = bits_of(&cs, native, LANES)?;
                Boolean::le_bits_to_fp(&bits)?.enforce_equal(&picked_bits[k])?;
                slot_bits.push(bits);
            }
            counts.push(selected.iter().map(|s| FpVar::from(s.clone())).sum());

            // Sums of this set's summed fields.
            let mut set_sums = Vec::new();
            for a in &st.aggregates {
                let Kind::Sum(field) = a.kind else { continue };
                if &filter_set(a) != set || set_sums.iter().any(|(g, _)| *g == field) {
                    continue;
                }
                let column = &columns[field];
                // Wholly selected elements, lane by lane, per block.
                let chosen: Vec<FpVar<Fr>> = all
                    .iter()
                    .zip(column)
                    .map(|(m, e)| product(m, e))
                    .collect::<Result<_, _>>()?;
                let mut total = lane_sums(&cs, &chosen)?;
                // The boundary elements, opened into 32-bit lanes.
                for (slot, bits) in slots.iter().zip(&slot_bits) {
                    let picked: FpVar<Fr> = slot
                        .iter()
                        .zip(column)
                        .map(|(b, e)| product(b, e))
                        .collect::<Result<Vec<_>, _>>()?
                        .iter()
                        .sum();
                    let selected: Vec<FpVar<Fr>> =
                        bits.iter().map(|b| FpVar::from(b.clone())).collect();
                    total += open_selected(&cs, &picked, &selected)?;
                }
                set_sums.push((field, total));
            }
            sums.push(set_sums);
        }

        enforce_outputs(st, &sets, &counts, &sums, outputs)
    }
}

/// Each aggregate's outputs (its count and, for a sum, its sum) equal to
/// its filter set's `counts[s]` and `sums[s]`, in output order.
pub(crate) fn enforce_outputs(
    st: &Statement,
    sets: &[Vec<usize>],
    counts: &[FpVar<Fr>],
    sums: &[Vec<(usize, FpVar<Fr>)>],
    outputs: &[FpVar<Fr>],
) -> Result<(), SynthesisError> {
    let mut out = outputs.iter();
    for a in &st.aggregates {
        let f = filter_set(a);
        let s = sets
            .iter()
            .position(|x| *x == f)
            .expect("every set is listed");
        let count_out = out.next().ok_or(SynthesisError::Unsatisfiable)?;
        counts[s].enforce_equal(count_out)?;
        if let Kind::Sum(field) = a.kind {
            let sum_out = out.next().ok_or(SynthesisError::Unsatisfiable)?;
            let (_, sum) = sums[s]
                .iter()
                .find(|(g, _)| *g == field)
                .expect("every sum is built");
            sum.enforce_equal(sum_out)?;
        }
    }
    Ok(())
}

/// The sum of every lane of `chosen` (packed elements whose lanes are
/// below 2^32): added lane by lane per [`BLOCK`] elements, no carry
/// crossing a lane, and each block's sum decomposed into its 42-bit lanes.
pub(crate) fn lane_sums(
    cs: &ConstraintSystemRef<Fr>,
    chosen: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut total = FpVar::zero();
    for block in chosen.chunks(BLOCK) {
        let block_sum: FpVar<Fr> = block.iter().sum();
        let native_bits = block_sum.value().ok().map(|s| s.into_bigint().to_bits_le());
        let mut recomposed = Vec::with_capacity(LANES * LANE_BITS);
        for lane in 0..LANES {
            let bits: Vec<Boolean<Fr>> = (0..LANE_BITS)
                .map(|bit| boolean(cs, native_bits.as_ref().map(|n| n[lane * LANE_BITS + bit])))
                .collect::<Result<_, _>>()?;
            total += Boolean::le_bits_to_fp(&bits)?;
            recomposed.extend(bits);
        }
        Boolean::le_bits_to_fp(&recomposed)?.enforce_equal(&block_sum)?;
    }
    Ok(total)
}

/// `picked` (one packed element) opened into its six 32-bit lanes, and
/// the sum of the lanes `selected` marks (each 0 or 1).
pub(crate) fn open_selected(
    cs: &ConstraintSystemRef<Fr>,
    picked: &FpVar<Fr>,
    selected: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let native = picked.value().ok();
    let lane_values: Option<Vec<u64>> = native.map(|p| {
        let bits = p.into_bigint().to_bits_le();
        (0..LANES)
            .map(|i| {
                (0..32)
                    .map(|b| u64::from(bits[i * LANE_BITS + b]) << b)
                    .sum()
            })
            .collect()
    });
    let shift = Fr::from(1u64 << LANE_BITS);
    let mut scale = Fr::from(1u64);
    let mut recomposed = FpVar::zero();
    let mut total = FpVar::zero();
    for (i, selected) in selected.iter().enumerate() {
        let lane_bits = bits_of(cs, lane_values.as_ref().map(|l| l[i]), 32)?;
        let lane = Boolean::le_bits_to_fp(&lane_bits)?;
        recomposed += &lane * scale;
        scale *= shift;
        total += product(selected, &lane)?;
    }
    recomposed.enforce_equal(picked)?;
    Ok(total)
}

#[cfg(test)]
pub(crate) mod tests {
    use ark_relations::gr1cs::ConstraintSystem;

    use super::*;
    use crate::attest::CircuitKind;
    use crate::statement::{Aggregate, Comparison};

    thread_local! {
        /// What a cheating prover claims of the first boundary element.
        static CLAIM: std::cell::Cell<Option<Mark>> = const { std::cell::Cell::new(None) };
    }

    /// The marks a prover claims: the honest ones, unless a test cheats.
    pub(super) fn cheat(mut marks: Vec<Mark>) -> Vec<Mark> {
        if let Some(claim) = CLAIM.get()
            && let Some(first) = marks.iter().position(|m| matches!(m, Mark::Boundary(_)))
        {
            marks[first] = claim;
        }
        marks
    }

    #[test]
    fn a_mixed_element_claimed_wholly_selected_or_not_is_refused() {
        // Seniors' cost: the element where the seniors start holds younger
        // patients too. A prover claims it wholly selected (adding their
        // cost) or wholly not (dropping the seniors in it), with the sum
        // that claim gives.
        let statement = crate::statement::seniors();
        let values = key_order(&statement, &records());
        let honest = IntervalCircuit::chunk(statement.clone(), 50, Fr::from(3u64), values.clone());
        let senior = |r: usize| values.get(2 * r).is_some_and(|a| *a >= 65);
        let first = (0..50).find(|r| senior(*r)).unwrap();
        let element = first / LANES * LANES..first / LANES * LANES + LANES;
        assert!(!senior(element.start), "the element is mixed");
        let cost = |r: usize| u64::from(values.get(2 * r + 1).copied().unwrap_or(0));
        let younger: u64 = element.clone().filter(|r| !senior(*r)).map(cost).sum();
        let older: u64 = element.clone().filter(|r| senior(*r)).map(cost).sum();
        let sum = reference(&statement, &values)[1];
        for (claim, claimed_sum) in [(Mark::All, sum + younger), (Mark::None, sum - older)] {
            let mut public = honest.public.clone().unwrap();
            *public.last_mut().unwrap() = Fr::from(claimed_sum);
            let cheat = IntervalCircuit {
                public: Some(public),
                ..honest.clone()
            };
            CLAIM.set(Some(claim));
            let claimed = satisfied(cheat);
            CLAIM.set(None);
            assert!(
                !claimed,
                "a boundary element claimed {:?}",
                claim == Mark::All
            );
        }
        assert!(satisfied(honest));
    }

    fn satisfied(circuit: IntervalCircuit) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        circuit.generate_constraints(cs.clone()).is_ok() && cs.is_satisfied().unwrap()
    }

    /// Age and cost: seniors (age >= 65) counted and their cost summed,
    /// children (age < 18) counted, 40-year-olds' cost summed, adults under
    /// 65 (two filters) counted, everyone's cost summed.
    pub(crate) fn clinic() -> Statement {
        let c = |op, threshold| Comparison {
            field: 0,
            op,
            threshold,
        };
        let a = |kind, filters: &[usize]| Aggregate {
            kind,
            filters: filters.to_vec(),
        };
        Statement {
            fields: 2,
            comparisons: vec![c(Op::Ge, 65), c(Op::Lt, 18), c(Op::Eq, 40), c(Op::Ge, 18)],
            aggregates: vec![
                a(Kind::Count, &[0]),
                a(Kind::Sum(1), &[0]),
                a(Kind::Count, &[1]),
                a(Kind::Sum(1), &[2]),
                a(Kind::Count, &[3, 0]),
                a(Kind::Sum(1), &[]),
            ],
            widths: Vec::new(),
        }
    }

    /// 40 records: the edges of every threshold, the largest cost, in no
    /// particular order.
    fn records() -> Vec<u32> {
        (0..40u32)
            .flat_map(|i| {
                let age = [65, 64, 17, 18, 40, 39, 41, 90, 0, 40][i as usize % 10] + i / 10;
                let cost = if i == 7 { u32::MAX } else { 1000 * i + 7 };
                [age, cost]
            })
            .collect()
    }

    #[test]
    fn the_clinic_statement_takes_this_circuit() {
        assert_eq!(CircuitKind::of(&clinic()), CircuitKind::Intervals);
        // Comparisons on two fields, or only `==` (a grouping): the general
        // circuit.
        let mut two = clinic();
        two.comparisons[1].field = 1;
        assert_eq!(CircuitKind::of(&two), CircuitKind::General);
        let mut equal = clinic();
        equal.comparisons = vec![equal.comparisons[2]];
        equal.aggregates = vec![Aggregate {
            kind: Kind::Count,
            filters: vec![0],
        }];
        assert_eq!(CircuitKind::of(&equal), CircuitKind::General);
    }

    #[test]
    fn an_honest_chunk_in_key_order_satisfies_it_with_padding() {
        let values = key_order(&clinic(), &records());
        // 40 records in a shape of 50: padding, and elements that are
        // wholly selected, wholly not, and mixed.
        let circuit = IntervalCircuit::chunk(clinic(), 50, Fr::from(3u64), values.clone());
        assert!(satisfied(circuit));
        // Full, and a shape that is not a multiple of six lanes.
        assert!(satisfied(IntervalCircuit::chunk(
            clinic(),
            40,
            Fr::from(3u64),
            values.clone()
        )));
        assert!(satisfied(IntervalCircuit::chunk(
            clinic(),
            43,
            Fr::from(3u64),
            values
        )));
        // An empty chunk.
        assert!(satisfied(IntervalCircuit::chunk(
            clinic(),
            12,
            Fr::from(3u64),
            Vec::new()
        )));
    }

    #[test]
    fn its_outputs_are_the_general_circuits() {
        let values = key_order(&clinic(), &records());
        let ours = IntervalCircuit::chunk(clinic(), 50, Fr::from(3u64), values.clone());
        let general =
            crate::statement::StatementCircuit::chunk(clinic(), 50, Fr::from(3u64), values);
        // Same outputs and thresholds; only the commitment's layout differs.
        assert_eq!(
            ours.public.as_ref().unwrap()[1..],
            general.public.unwrap()[1..]
        );
    }

    #[test]
    fn a_wrong_output_threshold_count_or_commitment_does_not() {
        let values = key_order(&clinic(), &records());
        let honest = IntervalCircuit::chunk(clinic(), 50, Fr::from(3u64), values);
        let public = honest.public.clone().unwrap();
        for i in 0..public.len() {
            let mut p = public.clone();
            p[i] += Fr::from(1u64);
            let wrong = IntervalCircuit {
                public: Some(p),
                ..honest.clone()
            };
            assert!(!satisfied(wrong), "public input {i}");
        }
    }

    #[test]
    fn other_values_under_the_same_public_inputs_do_not() {
        let values = key_order(&clinic(), &records());
        let honest = IntervalCircuit::chunk(clinic(), 50, Fr::from(3u64), values.clone());
        // A cost moved from one senior to another keeps every output; the
        // commitment no longer matches.
        let mut other = values.clone();
        let seniors: Vec<usize> = (0..40).filter(|r| values[2 * r] >= 65).collect();
        other[2 * seniors[0] + 1] += 1;
        other[2 * seniors[1] + 1] -= 1;
        assert_eq!(reference(&clinic(), &other), reference(&clinic(), &values));
        let wrong = IntervalCircuit {
            witness: Some((Fr::from(3u64), other)),
            ..honest
        };
        assert!(!satisfied(wrong));
    }

    #[test]
    fn the_constraints_counted_ahead_bound_those_synthesized() {
        let mut narrow = clinic();
        narrow.widths = vec![8, 32];
        for (statement, capacity) in [
            (clinic(), 600),
            (crate::statement::seniors(), 1200),
            (narrow, 600),
        ] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            cs.set_mode(ark_relations::gr1cs::SynthesisMode::Setup);
            IntervalCircuit::shape(statement.clone(), capacity)
                .generate_constraints(cs.clone())
                .unwrap();
            let (fixed, per_six) = constraints(&statement);
            let counted = fixed + per_six * capacity / LANES;
            let real = cs.num_constraints();
            assert!(
                counted >= real && counted <= real + real / 20,
                "counted {counted}, synthesized {real}"
            );
        }
        // The seniors' chunk fits the domain, and a narrow key holds more.
        let seniors = crate::statement::seniors();
        assert_eq!(capacity(&seniors), 2_592);
        let mut narrow = seniors;
        narrow.widths = vec![8, 32];
        assert_eq!(capacity(&narrow), 5_052);
    }

    #[test]
    fn records_out_of_key_order_are_refused() {
        // Committed in input order, the selections are not intervals.
        let circuit = IntervalCircuit::chunk(clinic(), 50, Fr::from(3u64), records());
        let cs = ConstraintSystem::<Fr>::new_ref();
        assert!(circuit.generate_constraints(cs).is_err());
    }

    #[test]
    fn a_statement_without_comparisons_over_two_fields_proves() {
        let statement = Statement {
            fields: 2,
            comparisons: vec![],
            aggregates: vec![
                Aggregate {
                    kind: Kind::Sum(0),
                    filters: vec![],
                },
                Aggregate {
                    kind: Kind::Sum(1),
                    filters: vec![],
                },
            ],
            widths: Vec::new(),
        };
        assert_eq!(CircuitKind::of(&statement), CircuitKind::Intervals);
        let values = key_order(&statement, &records());
        assert!(satisfied(IntervalCircuit::chunk(
            statement,
            50,
            Fr::from(3u64),
            values
        )));
    }
}
