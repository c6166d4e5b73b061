//! The run circuit: counts and sums behind filters on one narrow key (a
//! declared range of at most 2^8 values), with no record's key opened.
//!
//! As for the interval circuit ([`crate::intervals`]), the owner sorts each
//! chunk by the key. The key column is then committed as its runs: for
//! every key value `v` below 2^w (`w` the key's width), the number `c_v` of
//! the chunk's records with that key, 17 bits each and fourteen to an
//! element. The other fields are committed column by column in key order,
//! as the interval circuit commits them, so the records with key `v` hold
//! positions `P_v .. P_v + c_v`, where `P_v = c_0 + ... + c_{v-1}`. The
//! commitment is the hash of
//!
//! ```text
//! salt, counts, each other field's column elements, records + 2^65
//! ```
//!
//! (the 2^65 of [`crate::commit::runs_tag`] tells this layout from the row
//! and column layouts; the tag also holds the key's index and width). The
//! circuit
//!
//! - bounds every `c_v` to 17 bits and checks they add up to the records;
//! - per comparison, marks the key values below its threshold `t`: 2^w + 1
//!   booleans that never rise again and add up to `t` (`t <= 2^w`,
//!   [`Statement::check`]), so no value is decomposed;
//! - per filter set, takes the key values it selects (`>=` and `==` bound
//!   them from below, `<` and `==` from above), its count `Σ sel_v · c_v`
//!   and the positions `s .. e` its records hold (`s`: the records below
//!   its lower bounds);
//! - per summed field, adds the column elements wholly inside `s .. e`
//!   lane by lane per [`crate::commit::BLOCK`], as the lane-sum circuit
//!   does, and opens only the two elements holding `s` and `e` into 32-bit
//!   lanes: the head's lanes from `s`, the tail's below `e`. A sum of the
//!   key itself is `Σ v · sel_v · c_v`: no column at all.
//!
//! A record costs its summed fields' share of the hash and about five
//! constraints per filter set that sums (the marks of the elements), and
//! nothing for the key or a count: about 6.5 constraints per record for
//! `clinic_costs` with ages declared in `0..=150`, against the interval
//! circuit's 25 and the general circuit's 100 or so. Like the interval
//! circuit, it reads a summed column as the owner packs it.

use ark_ff::{AdditiveGroup, Field, PrimeField};
use ark_r1cs_std::GR1CSVar;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::FieldVar;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::Fr;
use crate::commit::{BLOCK, LANE_BITS, LANES, pack, runs_tag};
use crate::intervals::{self, DOMAIN, enforce_outputs, filter_set, filter_sets};
use crate::intervals::{lane_sums, open_selected};
use crate::poseidon;
use crate::statement::{
    Kind, Op, Statement, bits_of, public_inputs, public_vars, real_marks, reference,
};

/// The widest key this circuit takes: 2^8 key values, each a count.
pub const MAX_KEY_BITS: u32 = 8;
/// Bits of a key value's count.
const COUNT_BITS: usize = 17;
/// Counts per field element (238 of its 253 bits).
const COUNTS_PER_ELEMENT: usize = 14;
/// The most records a chunk holds (its counts stay below 2^17).
pub const MAX_CAPACITY: usize = (1 << 16) / LANES * LANES;

/// The key, if `statement` suits this circuit: it suits the interval
/// circuit ([`intervals::key`]) with a key whose width is at most
/// [`MAX_KEY_BITS`].
pub fn key(statement: &Statement) -> Option<usize> {
    match intervals::key(statement) {
        Some(Some(k)) if statement.width(k) <= MAX_KEY_BITS => Some(k),
        _ => None,
    }
}

/// Records per chunk: the most (a multiple of six, at most
/// [`MAX_CAPACITY`]) whose constraints, as [`constraints`] counts them
/// ahead, fit [`DOMAIN`].
pub fn capacity(statement: &Statement) -> usize {
    let budget = DOMAIN - DOMAIN / 100;
    let (mut lo, mut hi) = (1, MAX_CAPACITY / LANES);
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if constraints(statement, mid) <= budget {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    lo * LANES
}

/// The fields summed behind `set`, the key's excepted (it has no column).
fn summed(statement: &Statement, key: usize, set: &[usize]) -> Vec<usize> {
    let mut fields: Vec<usize> = statement
        .aggregates
        .iter()
        .filter_map(|a| match a.kind {
            Kind::Sum(f) if f != key && filter_set(a) == set => Some(f),
            _ => None,
        })
        .collect();
    fields.sort_unstable();
    fields.dedup();
    fields
}

/// Whether comparison `op` bounds the selected key values from below and
/// from above.
fn bounds(op: Op) -> (bool, bool) {
    match op {
        Op::Ge => (true, false),
        Op::Lt => (false, true),
        Op::Eq => (true, true),
    }
}

/// The constraints of a chunk of `elements` column elements (six records
/// each), counted ahead; a test checks the count against synthesis.
pub fn constraints(statement: &Statement, elements: usize) -> usize {
    let st = statement;
    let Some(k) = key(st) else {
        return usize::MAX;
    };
    let slots = 1usize << st.width(k);
    let absorbed = 2 + slots.div_ceil(COUNTS_PER_ELEMENT) + (st.fields - 1) * elements;
    // The hash, the counts' bits and their total, the comparisons' marks.
    let mut total = 969 * absorbed.div_ceil(poseidon::RATE) + 1;
    total += slots * COUNT_BITS + 1;
    total += st.comparisons.len() * 2 * (slots + 1) + st.output_len();
    for set in filter_sets(st) {
        let lower = set
            .iter()
            .filter(|f| bounds(st.comparisons[**f].op).0)
            .count();
        let upper = set
            .iter()
            .filter(|f| bounds(st.comparisons[**f].op).1)
            .count();
        // The ANDs of the bounds, the selection and its count.
        total += slots * (lower.saturating_sub(1) + upper.saturating_sub(1));
        total += slots * usize::from(lower > 0 && upper > 0);
        total += slots * usize::from(!set.is_empty());
        let fields = summed(st, k, &set);
        if fields.is_empty() {
            continue;
        }
        // The records below the set, the ends' remainders, the elements'
        // marks and which are whole, the ends' selected lanes.
        total += slots * usize::from(lower > 0);
        total += 2 * (LANES + 1) + 2 * 2 * elements + elements + 3 + 2 * LANES;
        // Per summed field: the whole elements' and the ends' products,
        // each block's lanes, the ends opened.
        let blocks = elements.div_ceil(BLOCK);
        total +=
            fields.len() * (3 * elements + blocks * (LANES * LANE_BITS + 1) + 2 * (LANES * 33 + 1));
    }
    total
}

/// A chunk as this circuit commits it: the count of every key value and
/// the other fields' columns (`others`, in field order), in key order.
struct Runs {
    counts: Vec<u64>,
    others: Vec<Vec<u32>>,
    records: usize,
}

impl Runs {
    /// The runs of `values` (`fields` per record, in any order), or `None`
    /// if a key is beyond the key's width.
    fn of(statement: &Statement, key: usize, values: &[u32]) -> Option<Runs> {
        let fields = statement.fields;
        let slots = 1usize << statement.width(key);
        let mut records: Vec<&[u32]> = values.chunks(fields).collect();
        records.sort_by_key(|r| r[key]);
        let mut counts = vec![0u64; slots];
        for r in &records {
            *counts.get_mut(r[key] as usize)? += 1;
        }
        let others = (0..fields)
            .filter(|f| *f != key)
            .map(|f| records.iter().map(|r| r[f]).collect())
            .collect();
        Some(Runs {
            counts,
            others,
            records: records.len(),
        })
    }
}

/// The counts packed fourteen to an element, 17 bits each.
fn pack_counts(counts: &[u64]) -> Vec<Fr> {
    let shift = Fr::from(1u64 << COUNT_BITS);
    counts
        .chunks(COUNTS_PER_ELEMENT)
        .map(|c| {
            c.iter()
                .rev()
                .fold(Fr::ZERO, |e, v| e * shift + Fr::from(*v))
        })
        .collect()
}

/// The commitment to a chunk of `values` (`fields` per record, in any
/// order: they are put in key order) in the run layout, for chunks of
/// `capacity` records.
///
/// # Panics
///
/// If `statement` does not suit this circuit ([`key`]) or a key is beyond
/// its declared width (the readers refuse such records).
pub fn commit(statement: &Statement, salt: Fr, values: &[u32], capacity: usize) -> Fr {
    let key = key(statement).expect("a statement of the run circuit");
    let runs = Runs::of(statement, key, values).expect("keys within their declared width");
    let lanes = capacity.div_ceil(LANES) * LANES;
    let mut input = vec![salt];
    input.extend(pack_counts(&runs.counts));
    for column in &runs.others {
        input.extend(pack(column, lanes));
    }
    input.push(Fr::from(runs.records as u64) + runs_tag(key, statement.width(key)));
    poseidon::hash(&input)
}

/// The run circuit over one chunk.
#[derive(Clone, Debug)]
pub struct RunCircuit {
    /// What it proves.
    pub statement: Statement,
    /// Records the shape holds.
    pub capacity: usize,
    /// The witness: salt and values, in any order (`None` for setup).
    pub witness: Option<(Fr, Vec<u32>)>,
    /// The public inputs (`None` for setup).
    pub public: Option<Vec<Fr>>,
}

impl RunCircuit {
    /// The shape only, for setup.
    pub fn shape(statement: Statement, capacity: usize) -> RunCircuit {
        RunCircuit {
            statement,
            capacity,
            witness: None,
            public: None,
        }
    }

    /// A chunk to prove.
    pub fn chunk(statement: Statement, capacity: usize, salt: Fr, values: Vec<u32>) -> RunCircuit {
        let records = values.len() / statement.fields;
        let commitment = commit(&statement, salt, &values, capacity);
        let outputs = reference(&statement, &values);
        let public = public_inputs(&statement, commitment, records as u64, &outputs);
        RunCircuit {
            statement,
            capacity,
            witness: Some((salt, values)),
            public: Some(public),
        }
    }
}

/// A small field element (a position or a count) as a number.
fn small(v: Fr) -> usize {
    v.into_bigint().0[0] as usize
}

/// Six booleans, exactly one set: `v` (below six) in unary.
fn one_hot(
    cs: &ConstraintSystemRef<Fr>,
    v: Option<usize>,
) -> Result<Vec<FpVar<Fr>>, SynthesisError> {
    let marks: Vec<FpVar<Fr>> = (0..LANES)
        .map(|i| {
            Boolean::new_witness(cs.clone(), || {
                v.map(|v| v == i).ok_or(SynthesisError::AssignmentMissing)
            })
            .map(FpVar::from)
        })
        .collect::<Result<_, _>>()?;
    marks
        .iter()
        .sum::<FpVar<Fr>>()
        .enforce_equal(&FpVar::one())?;
    Ok(marks)
}

/// `[v >= m]` for `v` in unary ([`one_hot`]).
fn at_least(unary: &[FpVar<Fr>], m: usize) -> FpVar<Fr> {
    unary.iter().skip(m).sum()
}

/// The number `unary` ([`one_hot`]) holds.
fn unary(unary: &[FpVar<Fr>]) -> FpVar<Fr> {
    unary
        .iter()
        .enumerate()
        .map(|(k, m)| m * Fr::from(k as u64))
        .sum()
}

impl ConstraintSynthesizer<Fr> for RunCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let st = &self.statement;
        let missing = || SynthesisError::AssignmentMissing;
        let key = key(st).ok_or(SynthesisError::Unsatisfiable)?;
        let slots = 1usize << st.width(key);
        let public = public_vars(&cs, st, self.public.as_deref())?;
        let (commitment, count) = (&public[0], &public[1]);
        let thresholds = &public[2..2 + st.comparisons.len()];
        let outputs = &public[2 + st.comparisons.len()..];
        let lanes = self.capacity.div_ceil(LANES) * LANES;
        let elements = lanes / LANES;
        let runs = match &self.witness {
            Some((_, values)) => {
                Some(Runs::of(st, key, values).ok_or(SynthesisError::Unsatisfiable)?)
            }
            None => None,
        };

        // The counts, bounded, adding up to the records.
        let mut count_bits = Vec::with_capacity(slots);
        let mut c = Vec::with_capacity(slots);
        for v in 0..slots {
            let bits = bits_of(&cs, runs.as_ref().map(|r| r.counts[v]), COUNT_BITS)?;
            c.push(Boolean::le_bits_to_fp(&bits)?);
            count_bits.push(bits);
        }
        c.iter().sum::<FpVar<Fr>>().enforce_equal(count)?;

        // The other fields' column elements, and the commitment.
        let mut columns: Vec<Vec<FpVar<Fr>>> = vec![Vec::new(); st.fields];
        for (i, f) in (0..st.fields).filter(|f| *f != key).enumerate() {
            let packed = runs.as_ref().map(|r| pack(&r.others[i], lanes));
            columns[f] = (0..elements)
                .map(|j| {
                    FpVar::new_witness(cs.clone(), || {
                        packed.as_ref().map(|e| e[j]).ok_or_else(missing)
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let salt = FpVar::new_witness(cs.clone(), || {
            self.witness.as_ref().map(|w| w.0).ok_or_else(missing)
        })?;
        let mut absorbed = vec![salt];
        for group in count_bits.chunks(COUNTS_PER_ELEMENT) {
            absorbed.push(Boolean::le_bits_to_fp(&group.concat())?);
        }
        absorbed.extend(columns.iter().flatten().cloned());
        absorbed.push(count + runs_tag(key, st.width(key)));
        poseidon::hash_var(cs.clone(), &absorbed)?.enforce_equal(commitment)?;

        // Per comparison, the key values below its threshold.
        let below: Vec<Vec<Boolean<Fr>>> = st
            .comparisons
            .iter()
            .zip(thresholds)
            .map(|(c, t)| {
                let native = runs.as_ref().map(|_| c.threshold as usize);
                real_marks(&cs, slots + 1, native, t)
            })
            .collect::<Result<_, _>>()?;

        let sets = filter_sets(st);
        let mut counts: Vec<FpVar<Fr>> = Vec::with_capacity(sets.len());
        let mut sums: Vec<Vec<(usize, FpVar<Fr>)>> = Vec::with_capacity(sets.len());
        for set in &sets {
            // The key values the set selects, and how many records each.
            let mut lower = vec![Boolean::TRUE; slots];
            let mut upper = vec![Boolean::TRUE; slots];
            let mut bounded_below = false;
            for &i in set {
                let (from_below, from_above) = bounds(st.comparisons[i].op);
                for v in 0..slots {
                    if from_below {
                        lower[v] = &lower[v] & &!below[i][v].clone();
                    }
                    if from_above {
                        // `v < t`, or for `==`, `v <= t`: `v - 1 < t`.
                        let under = match st.comparisons[i].op {
                            Op::Eq if v == 0 => Boolean::TRUE,
                            Op::Eq => below[i][v - 1].clone(),
                            _ => below[i][v].clone(),
                        };
                        upper[v] = &upper[v] & &under;
                    }
                }
                bounded_below |= from_below;
            }
            let picked: Vec<FpVar<Fr>> = (0..slots)
                .map(|v| FpVar::from(&lower[v] & &upper[v]) * &c[v])
                .collect();
            let set_count: FpVar<Fr> = picked.iter().sum();
            let mut set_sums = Vec::new();
            if st
                .aggregates
                .iter()
                .any(|a| a.kind == Kind::Sum(key) && filter_set(a) == *set)
            {
                let keys: FpVar<Fr> = picked
                    .iter()
                    .enumerate()
                    .map(|(v, p)| p * Fr::from(v as u64))
                    .sum();
                set_sums.push((key, keys));
            }
            let fields = summed(st, key, set);
            if !fields.is_empty() {
                // The positions the set's records hold: `s .. e`.
                let s: FpVar<Fr> = if bounded_below {
                    let kept: FpVar<Fr> = (0..slots)
                        .map(|v| FpVar::from(lower[v].clone()) * &c[v])
                        .sum();
                    count - kept
                } else {
                    FpVar::zero()
                };
                let e = &s + &set_count;
                let (s_n, e_n) = (s.value().ok().map(small), e.value().ok().map(small));
                // s = 6·first - ds and e = 6·last + de, ds and de below six:
                // elements `first .. last` are whole, `first - 1` (the
                // head) and `last` (the tail) hold the ends.
                let ds_n = s_n.map(|s| (LANES - s % LANES) % LANES);
                #[cfg(test)]
                let ds_n = ds_n.map(|d| (d + tests::shift()) % LANES);
                let ds = one_hot(&cs, ds_n)?;
                let de = one_hot(&cs, e_n.map(|e| e % LANES))?;
                let sixth = Fr::from(LANES as u64).inverse().expect("six is invertible");
                let first = (&s + unary(&ds)) * sixth;
                let last = (&e - unary(&de)) * sixth;
                let before = real_marks(&cs, elements, s_n.map(|s| s.div_ceil(LANES)), &first)?;
                let ends = real_marks(&cs, elements, e_n.map(|e| e / LANES), &last)?;
                let whole: Vec<FpVar<Fr>> = before
                    .iter()
                    .zip(&ends)
                    .map(|(b, e)| FpVar::from(&!b.clone() & e))
                    .collect();
                let at = |marks: &[Boolean<Fr>], j: usize| -> FpVar<Fr> {
                    marks
                        .get(j)
                        .map_or(FpVar::zero(), |m| FpVar::from(m.clone()))
                };
                let head: Vec<FpVar<Fr>> = (0..elements)
                    .map(|j| at(&before, j) - at(&before, j + 1))
                    .collect();
                let tail: Vec<FpVar<Fr>> = (0..elements)
                    .map(|j| {
                        let previous = if j == 0 {
                            FpVar::one()
                        } else {
                            at(&ends, j - 1)
                        };
                        previous - at(&ends, j)
                    })
                    .collect();
                // The head and the tail are apart unless one element holds
                // both ends (last = first - 1).
                let apart = (&last - &first + Fr::ONE).is_neq(&FpVar::zero())?;
                let apart = FpVar::from(apart);
                let mut head_lanes = Vec::with_capacity(LANES);
                let mut tail_lanes = Vec::with_capacity(LANES);
                for i in 0..LANES {
                    // Head lane i: at or after `s`, and before `e` if the
                    // tail is the same element. Tail lane i: before `e`.
                    let before_end = at_least(&de, i + 1);
                    let tail_lane = &apart * &before_end;
                    let apart_or_before_end = &apart + &before_end - &tail_lane;
                    head_lanes.push(at_least(&ds, LANES - i) * apart_or_before_end);
                    tail_lanes.push(tail_lane);
                }
                for f in fields {
                    let column = &columns[f];
                    let chosen: Vec<FpVar<Fr>> =
                        whole.iter().zip(column).map(|(m, x)| m * x).collect();
                    let mut total = lane_sums(&cs, &chosen)?;
                    for (end, selected) in [(&head, &head_lanes), (&tail, &tail_lanes)] {
                        let element: FpVar<Fr> = end.iter().zip(column).map(|(m, x)| m * x).sum();
                        total += open_selected(&cs, &element, selected)?;
                    }
                    set_sums.push((f, total));
                }
            }
            counts.push(set_count);
            sums.push(set_sums);
        }
        enforce_outputs(st, &sets, &counts, &sums, outputs)
    }
}

#[cfg(test)]
mod tests {
    use ark_relations::gr1cs::{ConstraintSystem, OptimizationGoal, SynthesisMode};

    use super::*;
    use crate::attest::CircuitKind;
    use crate::statement::{Aggregate, Comparison};

    thread_local! {
        /// What a cheating prover adds to the head's offset (`ds`).
        static SHIFT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// The shift a test's cheating prover makes.
    pub(super) fn shift() -> usize {
        SHIFT.get()
    }

    /// The interval circuit's clinic statement with ages declared in
    /// `0..=150` (8 bits), and the seniors' ages summed too.
    fn clinic() -> Statement {
        let mut st = crate::intervals::tests::clinic();
        st.widths = vec![8, 32];
        st.aggregates.push(Aggregate {
            kind: Kind::Sum(0),
            filters: vec![0],
        });
        st
    }

    /// 40 records: the edges of every threshold, the largest cost and the
    /// largest age, in no particular order.
    fn records() -> Vec<u32> {
        (0..40u32)
            .flat_map(|i| {
                let age = match [65, 64, 17, 18, 40, 39, 41, 90, 0, 255][i as usize % 10] {
                    255 => 255 - i / 10,
                    a => a + i / 10,
                };
                let cost = if i == 7 { u32::MAX } else { 1000 * i + 7 };
                [age, cost]
            })
            .collect()
    }

    fn satisfied(circuit: RunCircuit) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        circuit.generate_constraints(cs.clone()).is_ok() && cs.is_satisfied().unwrap()
    }

    #[test]
    fn a_narrow_key_takes_this_circuit_and_a_wide_one_does_not() {
        assert_eq!(CircuitKind::of(&clinic()), CircuitKind::Runs);
        assert!(CircuitKind::Intervals.proves(&clinic()));
        assert!(CircuitKind::General.proves(&clinic()));
        let mut wide = clinic();
        wide.widths = vec![9, 32];
        assert_eq!(CircuitKind::of(&wide), CircuitKind::Intervals);
        wide.widths = Vec::new();
        assert_eq!(CircuitKind::of(&wide), CircuitKind::Intervals);
    }

    #[test]
    fn every_chunk_length_and_alignment_proves_its_outputs() {
        // Every prefix of the records, in chunks of 42 and of 48: the ends
        // fall on every lane, in one element or two, and at the start.
        let statement = clinic();
        let all = records();
        for capacity in [42, 48] {
            for n in 0..=40 {
                let values = all[..2 * n].to_vec();
                let circuit =
                    RunCircuit::chunk(statement.clone(), capacity, Fr::from(9u64), values);
                assert!(satisfied(circuit), "{n} records in chunks of {capacity}");
            }
        }
    }

    #[test]
    fn a_claimed_output_other_than_the_records_is_refused() {
        let statement = clinic();
        let honest = RunCircuit::chunk(statement.clone(), 42, Fr::from(5u64), records());
        assert!(satisfied(honest.clone()));
        let outputs = 2 + statement.comparisons.len();
        for i in outputs..honest.public.as_ref().unwrap().len() {
            for delta in [Fr::ONE, -Fr::ONE] {
                let mut public = honest.public.clone().unwrap();
                public[i] += delta;
                let cheat = RunCircuit {
                    public: Some(public),
                    ..honest.clone()
                };
                assert!(!satisfied(cheat), "output {} off by one", i - outputs);
            }
        }
        // Another threshold with the same outputs.
        let mut public = honest.public.clone().unwrap();
        public[2] += Fr::ONE;
        assert!(!satisfied(RunCircuit {
            public: Some(public),
            ..honest
        }));
    }

    #[test]
    fn a_head_offset_other_than_the_start_s_is_refused() {
        // A prover that starts the seniors' cost a lane early or late, with
        // the sum that would give.
        let statement = crate::statement::Statement {
            widths: vec![8, 32],
            ..crate::statement::seniors()
        };
        let values = records();
        let honest = RunCircuit::chunk(statement.clone(), 42, Fr::from(3u64), values.clone());
        assert!(satisfied(honest.clone()));
        for shift in 1..LANES {
            SHIFT.set(shift);
            let refused = !satisfied(honest.clone());
            SHIFT.set(0);
            assert!(refused, "a head shifted by {shift}");
        }
    }

    #[test]
    fn a_key_beyond_its_width_does_not_prove() {
        let mut values = records();
        values[0] = 256;
        let statement = clinic();
        let circuit = RunCircuit {
            witness: Some((Fr::from(1u64), values)),
            ..RunCircuit::chunk(statement, 42, Fr::from(1u64), records())
        };
        assert!(!satisfied(circuit));
    }

    #[test]
    fn a_commitment_keyed_on_one_field_does_not_open_keyed_on_another() {
        // Age and department, both 8 bits, and a cost. Keyed on the age,
        // the hash reads the age counts, then the department column; a
        // forger swaps the two fields and keys on the department to read
        // the same list, and would prove the ages' counts as departments'.
        let by = |key: usize| Statement {
            fields: 3,
            comparisons: vec![Comparison {
                field: key,
                op: Op::Ge,
                threshold: 65,
            }],
            aggregates: vec![Aggregate {
                kind: Kind::Sum(2),
                filters: vec![0],
            }],
            widths: vec![8, 8, 32],
        };
        let values: Vec<u32> = (0..30u32).flat_map(|i| [i * 5, i % 7, 100 * i]).collect();
        let swapped: Vec<u32> = values.chunks(3).flat_map(|r| [r[1], r[0], r[2]]).collect();
        let salt = Fr::from(11u64);
        let honest = commit(&by(0), salt, &values, 42);
        let forged = RunCircuit {
            public: RunCircuit::chunk(by(1), 42, salt, swapped.clone())
                .public
                .map(|mut p| {
                    p[0] = honest;
                    p
                }),
            ..RunCircuit::chunk(by(1), 42, salt, swapped.clone())
        };
        assert_ne!(commit(&by(1), salt, &swapped, 42), honest);
        assert!(!satisfied(forged));
    }

    #[test]
    fn the_constraints_counted_ahead_bound_synthesis() {
        let count_only = Statement {
            aggregates: vec![Aggregate {
                kind: Kind::Count,
                filters: vec![0],
            }],
            ..clinic()
        };
        let seniors = Statement {
            widths: vec![8, 32],
            ..crate::statement::seniors()
        };
        for statement in [clinic(), count_only, seniors] {
            for elements in [7, 200] {
                let cs = ConstraintSystem::<Fr>::new_ref();
                cs.set_optimization_goal(OptimizationGoal::Constraints);
                cs.set_mode(SynthesisMode::Setup);
                RunCircuit::shape(statement.clone(), elements * LANES)
                    .generate_constraints(cs.clone())
                    .unwrap();
                cs.finalize();
                let real = cs.num_constraints();
                let ahead = constraints(&statement, elements);
                assert!(
                    ahead >= real && ahead - real <= 64 + real / 100,
                    "{elements} elements: {ahead} counted, {real} synthesized"
                );
            }
        }
        // The seniors' chunks: about 6.5 constraints a record.
        let seniors = Statement {
            widths: vec![8, 32],
            ..crate::statement::seniors()
        };
        let chunk = capacity(&seniors);
        assert!(chunk > 18_000, "{chunk}");
        assert_eq!(capacity(&count_only_statement()), MAX_CAPACITY);
    }

    /// Seniors counted, over their ages alone: no column to hash.
    fn count_only_statement() -> Statement {
        Statement {
            fields: 1,
            aggregates: vec![Aggregate {
                kind: Kind::Count,
                filters: vec![0],
            }],
            widths: vec![8],
            ..clinic()
        }
    }
}
