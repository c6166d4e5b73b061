//! A chunk's commitment: what the data owner computes at ingestion and
//! signs, and what the circuits open inside the proof.
//!
//! A chunk holds up to a circuit shape's `capacity` records, each with the
//! same number of attested `u32` fields. The values, record by record (or,
//! for the interval circuit, column by column: [`commit_columns`]), are
//! packed [`LANES`] to a field element, value `i` of an element in bits
//! `42·i .. 42·i + 32` (the 10 spare bits of each 42-bit lane let the sum
//! circuit add [`BLOCK`] elements lane by lane without a carry), the chunk
//! padded with zeros to its capacity. The chunk's commitment is the
//! Poseidon hash of
//!
//! ```text
//! salt, element_0, ..., element_{m-1}, count      (m = ⌈capacity·fields/6⌉)
//! ```
//!
//! where `salt` is 253 random bits (it hides the values: without it a
//! verifier could test guesses of a small chunk) and `count` the number of
//! real records (padding is not data). A dataset's commitment
//! ([`dataset`]) hashes its chunks' commitments in order and their number,
//! so no chunk can be dropped, repeated or moved.

use ark_ff::{AdditiveGroup, BigInteger, PrimeField};

use crate::Fr;
use crate::poseidon;

/// Values per field element.
pub const LANES: usize = 6;
/// Bits per lane: 32 of value, 10 of headroom.
pub const LANE_BITS: usize = 42;
/// Elements whose lanes the circuit adds before decomposing the sums:
/// 1,024 values below 2^32 sum below 2^42.
pub const BLOCK: usize = 1024;

/// The packed elements of `values`, padded to `capacity` values.
pub fn pack(values: &[u32], capacity: usize) -> Vec<Fr> {
    assert!(values.len() <= capacity);
    let elements = capacity.div_ceil(LANES);
    let mut out = Vec::with_capacity(elements);
    for chunk in 0..elements {
        let mut bits = vec![false; LANES * LANE_BITS];
        for lane in 0..LANES {
            let v = values.get(chunk * LANES + lane).copied().unwrap_or(0);
            for bit in 0..32 {
                bits[lane * LANE_BITS + bit] = (v >> bit) & 1 == 1;
            }
        }
        out.push(Fr::from_bigint(BigInteger::from_bits_le(&bits)).expect("252 bits fit"));
    }
    out
}

/// The commitment to a chunk of records under `salt`: `values` holds
/// `fields` values per record, for at most `capacity` records.
pub fn commit(salt: Fr, values: &[u32], fields: usize, capacity: usize) -> Fr {
    assert!(fields > 0 && values.len().is_multiple_of(fields));
    let mut input = vec![salt];
    input.extend(pack(values, capacity * fields));
    input.push(Fr::from((values.len() / fields) as u64));
    poseidon::hash(&input)
}

/// What the last element absorbed adds to the record count in the column
/// layout: 2^64, so that no list of elements is both a row-wise and a
/// column-wise commitment (a count is below 2^64).
pub fn columns_tag() -> Fr {
    Fr::from(u64::MAX) + Fr::from(1u64)
}

/// What the last element absorbed adds to the record count in the run
/// layout ([`crate::runs`]): 2^65, telling it from the row layout (no tag)
/// and the column layout ([`columns_tag`]), plus `(key · 2^8 + width) ·
/// 2^66`, so that one list of counts and columns is not a commitment with
/// another field as its key.
pub fn runs_tag(key: usize, width: u32) -> Fr {
    let which = Fr::from(((key as u64) << 8) + u64::from(width));
    columns_tag().double() + which * columns_tag().double().double()
}

/// The commitment to a chunk committed column by column (the interval
/// circuit's layout, [`crate::intervals`]): the salt, then each field's
/// values packed and padded to `capacity` rounded up to whole elements,
/// field after field, then the record count plus [`columns_tag`].
pub fn commit_columns(salt: Fr, values: &[u32], fields: usize, capacity: usize) -> Fr {
    assert!(fields > 0 && values.len().is_multiple_of(fields));
    let lanes = capacity.div_ceil(LANES) * LANES;
    let mut input = vec![salt];
    for f in 0..fields {
        let column: Vec<u32> = values.iter().skip(f).step_by(fields).copied().collect();
        input.extend(pack(&column, lanes));
    }
    input.push(Fr::from((values.len() / fields) as u64) + columns_tag());
    poseidon::hash(&input)
}

/// A dataset's commitment: its chunks' commitments, in order, and their
/// number.
pub fn dataset(chunks: &[Fr]) -> Fr {
    let mut input = chunks.to_vec();
    input.push(Fr::from(chunks.len() as u64));
    poseidon::hash(&input)
}

/// A fresh salt: 253 bits from the operating system's generator.
pub fn salt() -> Fr {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random generator");
    bytes[31] &= 0x1f;
    Fr::from_le_bytes_mod_order(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_hold_the_values_in_order() {
        let values = [1u32, u32::MAX, 0, 7, 8, 9, 11];
        let packed = pack(&values, 12);
        assert_eq!(packed.len(), 2);
        let bits = packed[0].into_bigint().to_bits_le();
        let lane = |i: usize| -> u64 {
            (0..LANE_BITS)
                .map(|b| u64::from(bits[i * LANE_BITS + b]) << b)
                .sum()
        };
        for (i, v) in values[..LANES].iter().enumerate() {
            assert_eq!(lane(i), u64::from(*v));
        }
        assert_eq!(packed[1], Fr::from(11u64));
    }

    #[test]
    fn the_commitment_binds_values_count_and_salt() {
        let salt = Fr::from(12345u64);
        let c = commit(salt, &[1, 2, 3], 1, 6);
        assert_ne!(c, commit(salt, &[1, 2, 4], 1, 6));
        // Padding is not data: three records, not four.
        assert_ne!(c, commit(salt, &[1, 2, 3, 0], 1, 6));
        assert_ne!(c, commit(Fr::from(12346u64), &[1, 2, 3], 1, 6));
        assert_eq!(c, commit(salt, &[1, 2, 3], 1, 6));
        // Two fields: the same values are two records, not four.
        assert_ne!(
            commit(salt, &[1, 2, 3, 4], 2, 6),
            commit(salt, &[1, 2, 3, 4], 1, 6)
        );
    }

    #[test]
    fn one_list_of_elements_is_not_both_a_row_wise_and_a_column_wise_commitment() {
        // Six records of two fields, row by row; and the six records whose
        // columns pack to the very same two elements.
        let salt = Fr::from(99u64);
        let rows: Vec<u32> = (1..=12).collect();
        let columns: Vec<u32> = (0..6).flat_map(|i| [rows[i], rows[6 + i]]).collect();
        let column =
            |f: usize| -> Vec<u32> { columns.iter().skip(f).step_by(2).copied().collect() };
        let elements = [pack(&column(0), 6), pack(&column(1), 6)].concat();
        assert_eq!(elements, pack(&rows, 12));
        // Untagged, the column layout's hash would be the row layout's: one
        // signed commitment, two datasets. The tag tells them apart.
        let untagged = poseidon::hash(&[vec![salt], elements, vec![Fr::from(6u64)]].concat());
        assert_eq!(untagged, commit(salt, &rows, 2, 6));
        assert_ne!(
            commit_columns(salt, &columns, 2, 6),
            commit(salt, &rows, 2, 6)
        );
    }

    #[test]
    fn the_dataset_commitment_binds_the_chunks_and_their_order() {
        let (a, b) = (Fr::from(1u64), Fr::from(2u64));
        let d = dataset(&[a, b]);
        assert_ne!(d, dataset(&[b, a]));
        assert_ne!(d, dataset(&[a]));
        assert_ne!(d, dataset(&[a, b, b]));
        assert_eq!(d, dataset(&[a, b]));
    }

    #[test]
    fn salts_are_fresh_and_below_2_to_the_253() {
        let (a, b) = (salt(), salt());
        assert_ne!(a, b);
        assert!(a.into_bigint().num_bits() <= 253);
    }
}
