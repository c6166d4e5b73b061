//! The chunk sum circuit: the count and sum of a chunk's committed values.
//!
//! Public inputs, in order: the chunk's commitment ([`crate::commit`]), the
//! count of its records, the sum of their values. Witness: the salt and the
//! packed elements. The circuit hashes salt, elements and count and
//! requires the commitment; then, per block of [`BLOCK`] elements, it adds
//! the elements (free: a linear combination), which adds their lanes, and
//! decomposes that block sum into [`LANES`] lanes of [`LANE_BITS`] bits —
//! 252 boolean constraints per 6,144 records. The lane sums are below 2^42
//! and the block sum below 2^252 < r, so the decomposition is unique, and
//! the sum of all lane sums is the chunk's sum.
//!
//! What a proof says: the committed elements, read as the owner packs them
//! (each lane below 2^32), sum to the public sum. The owner signs the
//! commitment; the prover cannot change an element without a Poseidon
//! collision.

use ark_ff::{BigInteger, PrimeField};
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::FieldVar;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::Fr;
use crate::commit::{BLOCK, LANE_BITS, LANES, pack};
use crate::poseidon;

/// Records in a chunk of the lane circuit: 2,046 elements, which with the
/// salt and the count fill exactly 64 permutations, and whose constraints
/// (62,524) fit a 2^16 evaluation domain.
pub const CHUNK: usize = 2046 * LANES;

/// The native reference: the count and sum of `values`.
pub fn reference(values: &[u32]) -> (u64, u64) {
    (
        values.len() as u64,
        values.iter().map(|v| u64::from(*v)).sum(),
    )
}

/// One chunk's proof statement and, for proving, its witness.
#[derive(Clone, Debug)]
pub struct SumCircuit {
    /// Records the shape holds (a multiple of [`LANES`]).
    pub capacity: usize,
    /// The witness: salt and the packed elements (`None` for setup).
    pub witness: Option<(Fr, Vec<Fr>)>,
    /// The public inputs: commitment, count, sum (`None` for setup).
    pub public: Option<[Fr; 3]>,
}

impl SumCircuit {
    /// The shape only, for setup.
    pub fn shape(capacity: usize) -> SumCircuit {
        SumCircuit {
            capacity,
            witness: None,
            public: None,
        }
    }

    /// A chunk to prove: its public inputs are those of the native
    /// reference.
    pub fn chunk(capacity: usize, salt: Fr, values: Vec<u32>) -> SumCircuit {
        let (count, sum) = reference(&values);
        let commitment = crate::commit::commit(salt, &values, 1, capacity);
        SumCircuit {
            capacity,
            witness: Some((salt, pack(&values, capacity))),
            public: Some([commitment, Fr::from(count), Fr::from(sum)]),
        }
    }
}

impl ConstraintSynthesizer<Fr> for SumCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let missing = || SynthesisError::AssignmentMissing;
        let public = self.public;
        let input =
            |i: usize| FpVar::new_input(cs.clone(), || public.map(|p| p[i]).ok_or_else(missing));
        let commitment = input(0)?;
        let count = input(1)?;
        let sum = input(2)?;
        let elements_native = self.witness.as_ref().map(|(_, e)| e);
        let salt = FpVar::new_witness(cs.clone(), || {
            self.witness.as_ref().map(|w| w.0).ok_or_else(missing)
        })?;
        let n = self.capacity.div_ceil(LANES);
        let elements: Vec<FpVar<Fr>> = (0..n)
            .map(|i| {
                FpVar::new_witness(cs.clone(), || {
                    elements_native
                        .and_then(|e| e.get(i).copied())
                        .ok_or_else(missing)
                })
            })
            .collect::<Result<_, _>>()?;

        let mut absorbed = vec![salt];
        absorbed.extend(elements.iter().cloned());
        absorbed.push(count);
        poseidon::hash_var(cs.clone(), &absorbed)?.enforce_equal(&commitment)?;

        // Per block: the lanes of the block sum, as bits.
        let mut total = FpVar::zero();
        for (b, block) in elements.chunks(BLOCK).enumerate() {
            let block_sum: FpVar<Fr> = block.iter().sum();
            let native_bits: Option<Vec<bool>> = elements_native.map(|e| {
                let sum: Fr = e.iter().skip(b * BLOCK).take(BLOCK).sum();
                sum.into_bigint().to_bits_le()
            });
            let mut recomposed = Vec::with_capacity(LANES * LANE_BITS);
            for lane in 0..LANES {
                let bits: Vec<Boolean<Fr>> = (0..LANE_BITS)
                    .map(|bit| {
                        Boolean::new_witness(cs.clone(), || {
                            native_bits
                                .as_ref()
                                .map(|n| n[lane * LANE_BITS + bit])
                                .ok_or_else(missing)
                        })
                    })
                    .collect::<Result<_, _>>()?;
                total += Boolean::le_bits_to_fp(&bits)?;
                recomposed.extend(bits);
            }
            Boolean::le_bits_to_fp(&recomposed)?.enforce_equal(&block_sum)?;
        }
        total.enforce_equal(&sum)
    }
}

#[cfg(test)]
mod tests {
    use ark_relations::gr1cs::ConstraintSystem;

    use super::*;

    fn satisfied(circuit: SumCircuit) -> bool {
        let cs = ConstraintSystem::<Fr>::new_ref();
        circuit.generate_constraints(cs.clone()).unwrap();
        cs.is_satisfied().unwrap()
    }

    fn values(n: usize) -> Vec<u32> {
        (0..n as u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect()
    }

    #[test]
    fn the_reference_sums_without_wrapping() {
        assert_eq!(
            reference(&[u32::MAX, u32::MAX, 1]),
            (3, 2 * u64::from(u32::MAX) + 1)
        );
        assert_eq!(reference(&[]), (0, 0));
    }

    #[test]
    fn an_honest_chunk_satisfies_the_constraints() {
        // Two blocks, the second partial; a short last element.
        let v = values(6 * 1030 - 3);
        assert!(satisfied(SumCircuit::chunk(6 * 1030, Fr::from(99u64), v)));
        // A full block of the largest values: no carry between lanes.
        let full = vec![u32::MAX; 6 * 1024];
        assert!(satisfied(SumCircuit::chunk(6 * 1024, Fr::from(1u64), full)));
    }

    #[test]
    fn a_wrong_sum_count_or_commitment_does_not() {
        let honest = SumCircuit::chunk(72, Fr::from(5u64), values(60));
        let public = honest.public.unwrap();
        for (i, delta) in [(0, 1u64), (1, 1), (2, 1), (2, 1 << 42)] {
            let mut wrong = honest.clone();
            let mut p = public;
            p[i] += Fr::from(delta);
            wrong.public = Some(p);
            assert!(!satisfied(wrong), "public input {i} changed by {delta}");
        }
    }

    #[test]
    fn a_witness_other_than_the_committed_values_does_not() {
        let honest = SumCircuit::chunk(72, Fr::from(5u64), values(60));
        // The same public inputs, other values with the same sum.
        let mut v = values(60);
        v[0] += 1;
        v[1] -= 1;
        let wrong = SumCircuit {
            witness: Some((Fr::from(5u64), pack(&v, 72))),
            ..honest
        };
        assert!(!satisfied(wrong));
    }

    /// A commitment its signer did not pack honestly: one lane holds
    /// 2^32 + 7, a value no `u32` has. The circuit checks no element's
    /// range (that would cost 32 constraints a record, not 5.1), so it
    /// attests the lanes' sum — 2^32 more than any reading of the data as
    /// `u32`s. What keeps that from being a lie about data: (1) no list of
    /// `u32`s packs to that element, so the commitment cannot be opened
    /// (Poseidon binds the elements), and (2) the signer signs the dataset
    /// commitment at ingestion, so anyone else who substitutes such a
    /// chunk breaks the signed commitment the verifier recomputes.
    #[test]
    fn a_dishonestly_packed_commitment_cannot_be_opened_nor_substituted() {
        let values = values(60);
        let salt = Fr::from(5u64);
        let mut elements = pack(&values, 72);
        elements[0] += Fr::from(1u64 << 32);
        let mut absorbed = vec![salt];
        absorbed.extend(elements.iter().copied());
        absorbed.push(Fr::from(60u64));
        let dishonest = crate::poseidon::hash(&absorbed);
        let (count, sum) = reference(&values);
        let forged = SumCircuit {
            capacity: 72,
            witness: Some((salt, elements.clone())),
            public: Some([dishonest, Fr::from(count), Fr::from(sum + (1 << 32))]),
        };
        assert!(
            satisfied(forged),
            "the lanes' sum, out-of-range lane included"
        );

        // (1) No u32s pack to it: `pack` sets only bits 0..32 of a lane.
        let bits = elements[0].into_bigint().to_bits_le();
        assert!(bits[32]);
        assert!(pack(&values, 72).iter().all(|e| (0..LANES).all(|l| {
            !e.into_bigint().to_bits_le()[l * LANE_BITS + 32..(l + 1) * LANE_BITS].contains(&true)
        })));
        assert_ne!(dishonest, crate::commit::commit(salt, &values, 1, 72));

        // (2) Substituted into a signed dataset, the chunks no longer add
        // up to the signed commitment.
        let signed = crate::commit::dataset(&[crate::commit::commit(salt, &values, 1, 72)]);
        assert_ne!(crate::commit::dataset(&[dishonest]), signed);
    }

    #[test]
    fn a_record_costs_under_five_and_a_quarter_constraints() {
        let capacity = CHUNK;
        let cs = ConstraintSystem::<Fr>::new_ref();
        SumCircuit::chunk(capacity, Fr::from(3u64), values(capacity))
            .generate_constraints(cs.clone())
            .unwrap();
        let per_record = cs.num_constraints() as f64 / capacity as f64;
        eprintln!(
            "{} constraints, {per_record:.2} per record",
            cs.num_constraints()
        );
        assert!(per_record < 5.25, "{per_record} constraints per record");
        // The chunk's constraints fill a 2^16 evaluation domain.
        assert!(cs.num_constraints() + 3 < 1 << 16);
    }
}
