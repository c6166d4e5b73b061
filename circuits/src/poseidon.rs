//! Poseidon over BN254's scalar field, the one sponge every commitment and
//! circuit uses: width 33 (rate 32, capacity 1), S-box x^5, 8 full rounds
//! and 59 partial rounds, round constants and MDS matrix from the Grain
//! LFSR (`find_poseidon_ark_and_mds`). These are not circomlib's constants
//! (circomlib stops at width 17): an external tool checks our proofs
//! (snarkjs), not our commitment.
//!
//! The round numbers are those the Poseidon authors' script gives for this
//! field, width and 128-bit security (`calc_round_numbers.py` of hadeshash
//! at b5434fd, with the extra Gröbner-basis check of eprint 2023/537, as
//! published in 0xPolygonZero/hash-constants), its own margin included
//! (two more full rounds, 7.5 % more partial ones): `R_F = 8, R_P = 59`.
//! The wide state is what makes a committed value cheap in a circuit: the
//! 8·33 + 59 = 323 S-boxes of a permutation absorb 32 elements of six
//! values, 5.05 constraints per value (width 17 cost 6.4).
//!
//! The permutation is compiled once into straight-line code over its S-box
//! outputs ([`Permutation`]): every S-box input, and every output element,
//! is written as one flat linear combination of the permutation's inputs
//! and the S-box outputs before it. The round constants and the MDS matrix
//! do not depend on the data, so this is done once per process, when the
//! first circuit is built. The gadget hands arkworks flat combinations only
//! — built with arkworks' own field arithmetic, a partial round's
//! combinations nest 59 deep and dominate proving (inlining them took
//! minutes for a chunk of twelve thousand records). The native hash is arkworks'
//! `PoseidonSponge` itself (compiling the permutation costs tens of
//! milliseconds, which a verifier hashing one dataset commitment should not
//! pay); the tests check the compiled code against it.

use std::sync::OnceLock;

use ark_crypto_primitives::sponge::CryptographicSponge;
use ark_crypto_primitives::sponge::poseidon::{
    PoseidonConfig, PoseidonSponge, find_poseidon_ark_and_mds,
};
use ark_ff::{AdditiveGroup, Field, PrimeField, Zero};
use ark_r1cs_std::fields::fp::{AllocatedFp, FpVar};
use ark_relations::gr1cs::{ConstraintSystemRef, LinearCombination, SynthesisError, Variable};

use crate::Fr;

/// Field elements absorbed per permutation.
pub const RATE: usize = 32;
/// The state: the rate and one capacity element (index 0).
pub const WIDTH: usize = RATE + 1;
const FULL_ROUNDS: usize = 8;
const PARTIAL_ROUNDS: usize = 59;
const ALPHA: u64 = 5;

/// The parameters, in arkworks' form (computed once).
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

/// A linear combination over the permutation's basis: index 0 is the
/// constant one, `1..=WIDTH` the input state, `WIDTH + 1 + k` the output of
/// S-box `k`.
type Terms = Vec<(usize, Fr)>;

/// The permutation as straight-line code.
#[derive(Debug)]
pub struct Permutation {
    /// Each S-box's input, in order.
    sboxes: Vec<Terms>,
    /// The output state.
    outputs: Vec<Terms>,
}

impl Permutation {
    /// The compiled permutation of [`config`] (compiled once).
    pub fn get() -> &'static Permutation {
        static PERMUTATION: OnceLock<Permutation> = OnceLock::new();
        PERMUTATION.get_or_init(|| Permutation::compile(config()))
    }

    /// Runs arkworks' round structure (ark, S-box, MDS; full rounds split
    /// around the partial ones) symbolically: the state as dense
    /// coefficient vectors over the basis.
    fn compile(config: &PoseidonConfig<Fr>) -> Permutation {
        let rounds = config.full_rounds + config.partial_rounds;
        let half = config.full_rounds / 2;
        let basis = 1 + WIDTH + config.full_rounds * WIDTH + config.partial_rounds;
        let mut state: Vec<Vec<Fr>> = (0..WIDTH)
            .map(|j| {
                let mut v = vec![Fr::ZERO; basis];
                v[1 + j] = Fr::ONE;
                v
            })
            .collect();
        let mut sboxes = Vec::new();
        for round in 0..rounds {
            for (element, constant) in state.iter_mut().zip(&config.ark[round]) {
                element[0] += constant;
            }
            let full = round < half || round >= half + config.partial_rounds;
            for element in state.iter_mut().take(if full { WIDTH } else { 1 }) {
                sboxes.push(sparse(element));
                element.iter_mut().for_each(|c| *c = Fr::ZERO);
                element[WIDTH + sboxes.len()] = Fr::ONE;
            }
            state = (0..WIDTH)
                .map(|i| {
                    let mut mixed = vec![Fr::ZERO; basis];
                    for (element, m) in state.iter().zip(&config.mds[i]) {
                        for (out, c) in mixed.iter_mut().zip(element) {
                            *out += *m * c;
                        }
                    }
                    mixed
                })
                .collect();
        }
        Permutation {
            sboxes,
            outputs: state.iter().map(|e| sparse(e)).collect(),
        }
    }

    /// The permutation of `state`, natively (to check the compiled code).
    #[cfg(test)]
    fn apply(&self, state: &[Fr; WIDTH]) -> [Fr; WIDTH] {
        let mut basis = Vec::with_capacity(1 + WIDTH + self.sboxes.len());
        basis.push(Fr::ONE);
        basis.extend_from_slice(state);
        for input in &self.sboxes {
            let x = eval(input, &basis);
            basis.push(x.pow([ALPHA]));
        }
        std::array::from_fn(|i| eval(&self.outputs[i], &basis))
    }

    /// The permutation in a circuit: three constraints per S-box
    /// (x·x = x², x²·x² = x⁴, x⁴·x = x⁵), the linear layers free.
    pub fn apply_var(
        &self,
        cs: &ConstraintSystemRef<Fr>,
        state: &[Lc; WIDTH],
    ) -> Result<[Lc; WIDTH], SynthesisError> {
        let mut basis: Vec<Lc> = Vec::with_capacity(1 + WIDTH + self.sboxes.len());
        basis.push(Lc::constant(Fr::ONE));
        basis.extend(state.iter().cloned());
        for input in &self.sboxes {
            let x = Lc::combine(input, &basis);
            let x2 = x.value.map(|v| v.square());
            let x4 = x2.map(|v| v.square());
            let x5 = x4.zip(x.value).map(|(a, b)| a * b);
            let witness = |v: Option<Fr>| {
                cs.new_witness_variable(|| v.ok_or(SynthesisError::AssignmentMissing))
            };
            let (v2, v4, v5) = (witness(x2)?, witness(x4)?, witness(x5)?);
            let lc = |v: Variable| LinearCombination(vec![(Fr::ONE, v)]);
            cs.enforce_r1cs_constraint(|| x.lc(), || x.lc(), || lc(v2))?;
            cs.enforce_r1cs_constraint(|| lc(v2), || lc(v2), || lc(v4))?;
            cs.enforce_r1cs_constraint(|| lc(v4), || x.lc(), || lc(v5))?;
            basis.push(Lc {
                terms: vec![(Fr::ONE, v5)],
                value: x5,
            });
        }
        Ok(std::array::from_fn(|i| {
            Lc::combine(&self.outputs[i], &basis)
        }))
    }

    /// S-boxes per permutation (three constraints each).
    pub fn sbox_count(&self) -> usize {
        self.sboxes.len()
    }
}

fn sparse(dense: &[Fr]) -> Terms {
    dense
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.is_zero())
        .map(|(i, c)| (i, *c))
        .collect()
}

#[cfg(test)]
fn eval(terms: &Terms, basis: &[Fr]) -> Fr {
    terms.iter().map(|(i, c)| *c * basis[*i]).sum()
}

/// A flat linear combination in a circuit, with its value when proving.
#[derive(Clone, Debug)]
pub struct Lc {
    terms: Vec<(Fr, Variable)>,
    value: Option<Fr>,
}

impl Lc {
    fn constant(c: Fr) -> Lc {
        Lc {
            terms: vec![(c, Variable::One)],
            value: Some(c),
        }
    }

    /// `var`'s combination: its variable, or a constant.
    pub fn of(var: &FpVar<Fr>) -> Lc {
        match var {
            FpVar::Constant(c) => Lc::constant(*c),
            FpVar::Var(v) => Lc {
                terms: vec![(Fr::ONE, v.variable)],
                value: v.value().ok(),
            },
        }
    }

    fn add(&mut self, other: &Lc) {
        self.terms.extend_from_slice(&other.terms);
        self.value = self.value.zip(other.value).map(|(a, b)| a + b);
    }

    fn combine(terms: &Terms, basis: &[Lc]) -> Lc {
        let mut out = Lc {
            terms: Vec::new(),
            value: Some(Fr::ZERO),
        };
        for (i, c) in terms {
            let b = &basis[*i];
            out.terms
                .extend(b.terms.iter().map(|(bc, v)| (*c * bc, *v)));
            out.value = out.value.zip(b.value).map(|(acc, x)| acc + *c * x);
        }
        out
    }

    fn lc(&self) -> LinearCombination<Fr> {
        LinearCombination(self.terms.clone())
    }

    /// This combination as a field variable (no constraint).
    pub fn to_var(&self, cs: &ConstraintSystemRef<Fr>) -> Result<FpVar<Fr>, SynthesisError> {
        let variable = cs.new_lc(|| self.lc())?;
        Ok(FpVar::Var(AllocatedFp::new(
            self.value,
            variable,
            cs.clone(),
        )))
    }
}

/// The hash of `elements`: arkworks' `PoseidonSponge` absorbing them at
/// once ([`RATE`] to a permutation), then one element squeezed.
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
    let p = Permutation::get();
    let mut state: [Lc; WIDTH] = std::array::from_fn(|_| Lc::constant(Fr::ZERO));
    for chunk in elements.chunks(RATE) {
        for (s, e) in state[1..].iter_mut().zip(chunk) {
            s.add(&Lc::of(e));
        }
        state = p.apply_var(&cs, &state)?;
    }
    if elements.is_empty() {
        state = p.apply_var(&cs, &state)?;
    }
    state[1].to_var(&cs)
}

#[cfg(test)]
mod tests {
    use ark_r1cs_std::GR1CSVar;
    use ark_r1cs_std::alloc::AllocVar;
    use ark_r1cs_std::eq::EqGadget;
    use ark_relations::gr1cs::ConstraintSystem;

    use super::*;

    /// The sponge of [`hash_var`] over the compiled permutation, natively.
    fn compiled(elements: &[Fr]) -> Fr {
        let p = Permutation::get();
        let mut state = [Fr::ZERO; WIDTH];
        for chunk in elements.chunks(RATE) {
            for (s, e) in state[1..].iter_mut().zip(chunk) {
                *s += e;
            }
            state = p.apply(&state);
        }
        if elements.is_empty() {
            state = p.apply(&state);
        }
        state[1]
    }

    fn elements(n: u64) -> Vec<Fr> {
        (0..n)
            .map(|i| Fr::from(i * i + 7) - Fr::from(1u64 << 40))
            .collect()
    }

    #[test]
    fn the_compiled_hash_is_arkworks_poseidon() {
        for n in [0, 1, 31, 32, 33, 64, 65, 100] {
            assert_eq!(compiled(&elements(n)), hash(&elements(n)), "{n} elements");
        }
    }

    #[test]
    fn the_gadget_computes_the_hash_in_three_constraints_per_sbox() {
        for n in [1u64, 32, 70] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let vars: Vec<FpVar<Fr>> = elements(n)
                .into_iter()
                .map(|e| FpVar::new_witness(cs.clone(), || Ok(e)).unwrap())
                .collect();
            let h = hash_var(cs.clone(), &vars).unwrap();
            assert_eq!(h.value().unwrap(), hash(&elements(n)));
            let expected = FpVar::new_input(cs.clone(), || Ok(hash(&elements(n)))).unwrap();
            h.enforce_equal(&expected).unwrap();
            assert!(cs.is_satisfied().unwrap());
            let permutations = n.div_ceil(RATE as u64) as usize;
            let sboxes = FULL_ROUNDS * WIDTH + PARTIAL_ROUNDS;
            assert_eq!(cs.num_constraints(), 3 * sboxes * permutations + 1);
        }
    }

    #[test]
    fn the_gadget_rejects_another_hash() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let vars: Vec<FpVar<Fr>> = elements(20)
            .into_iter()
            .map(|e| FpVar::new_witness(cs.clone(), || Ok(e)).unwrap())
            .collect();
        let h = hash_var(cs.clone(), &vars).unwrap();
        let wrong = FpVar::new_input(cs.clone(), || Ok(hash(&elements(21)))).unwrap();
        h.enforce_equal(&wrong).unwrap();
        assert!(!cs.is_satisfied().unwrap());
    }
}
