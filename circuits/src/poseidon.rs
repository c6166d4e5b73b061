//! Poseidon over BN254's scalar field, the one sponge every commitment and
//! circuit uses: width 17 (rate 16, capacity 1), S-box x^5, 8 full rounds
//! and 68 partial rounds (the Poseidon paper's 128-bit choice for this width
//! and a 254-bit field, as circomlib's table has it), round constants and MDS matrix from the Grain LFSR
//! (`find_poseidon_ark_and_mds`). These are not circomlib's constants: an
//! external tool checks our proofs (snarkjs), not our commitment.

use std::sync::OnceLock;

use ark_crypto_primitives::sponge::CryptographicSponge;
use ark_crypto_primitives::sponge::constraints::CryptographicSpongeVar;
use ark_crypto_primitives::sponge::poseidon::constraints::PoseidonSpongeVar;
use ark_crypto_primitives::sponge::poseidon::{
    PoseidonConfig, PoseidonSponge, find_poseidon_ark_and_mds,
};
use ark_ff::PrimeField;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSystemRef, SynthesisError};

use crate::Fr;

/// Field elements absorbed per permutation.
pub const RATE: usize = 16;
const FULL_ROUNDS: usize = 8;
const PARTIAL_ROUNDS: usize = 68;
const ALPHA: u64 = 5;

/// The parameters (computed once).
pub fn config() -> &'static PoseidonConfig<Fr> {
    static CONFIG: OnceLock<PoseidonConfig<Fr>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            u64::from(Fr::MODULUS_BIT_SIZE),
            RATE,
            FULL_ROUNDS as u64,
            PARTIAL_ROUNDS as u64,
            0,
        );
        PoseidonConfig::new(FULL_ROUNDS, PARTIAL_ROUNDS, ALPHA, mds, ark, RATE, 1)
    })
}

/// The hash of `elements`: absorbed in order, one element squeezed.
pub fn hash(elements: &[Fr]) -> Fr {
    let mut sponge = PoseidonSponge::new(config());
    sponge.absorb(&elements.to_vec());
    sponge.squeeze_field_elements::<Fr>(1)[0]
}

/// [`hash`] in a circuit.
pub fn hash_var(
    cs: ConstraintSystemRef<Fr>,
    elements: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut sponge = PoseidonSpongeVar::new(cs, config());
    sponge.absorb(&elements.to_vec())?;
    Ok(sponge.squeeze_field_elements(1)?.remove(0))
}
