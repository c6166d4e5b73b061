//! A multi-party Groth16 setup run with snarkjs: our circuits exported in
//! iden3's `.r1cs` format, the ceremony's `.zkey` read back into an
//! arkworks proving key, and the R1CS-to-QAP reduction snarkjs' keys need.
//!
//! The ceremony itself (powers of tau, phase 2, every contribution and its
//! verification) is snarkjs' code, which has been reviewed and used in
//! production ceremonies; what lives here is the bridge. Two details make
//! a `.zkey` differ from an arkworks key:
//!
//! - Its H query holds the Lagrange basis of the *odd* points of a domain
//!   twice the size, so the prover evaluates A·B − C there rather than
//!   dividing by the vanishing polynomial ([`CircomReduction`]).
//! - Field elements are stored little-endian in Montgomery form; the
//!   coefficients of section 4 twice over (R²), which we never read: the
//!   prover takes its matrices from our own synthesis, the same ones the
//!   exported `.r1cs` holds.
//!
//! Wire `i` of the exported R1CS is arkworks' variable `i`: the constant
//! one, the public inputs (declared as snarkjs "public inputs"), then the
//! witnesses. snarkjs appends one constraint per public input (and the
//! one) after ours, as arkworks' reductions do, so the two see the same
//! QAP.

use ark_bn254::{Bn254, Fq, Fq2, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInteger, PrimeField, Zero};
use ark_groth16::r1cs_to_qap::{R1CSToQAP, evaluate_constraint};
use ark_groth16::{ProvingKey, VerifyingKey};
use ark_poly::EvaluationDomain;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, Matrix, OptimizationGoal,
    R1CS_PREDICATE_LABEL, SynthesisError, SynthesisMode,
};

use crate::Fr;
use crate::attest::CircuitKind;
use crate::intervals::IntervalCircuit;
use crate::runs::RunCircuit;
use crate::statement::{Statement, StatementCircuit};
use crate::sum::SumCircuit;

/// A circuit shape's constraints as the prover and the verifier build
/// them: the matrices A, B, C and the number of instance variables (the
/// one included) and witnesses.
#[derive(Clone)]
pub struct Shape {
    /// A, B and C, rows indexed by constraint, entries by variable.
    pub matrices: Vec<Matrix<Fr>>,
    /// The one and the public inputs.
    pub instance: usize,
    /// The witnesses.
    pub witness: usize,
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shape")
            .field("constraints", &self.constraints())
            .field("instance", &self.instance)
            .field("witness", &self.witness)
            .finish()
    }
}

impl Shape {
    /// The constraints of `statement`'s circuit over `capacity` records,
    /// synthesized as arkworks' generator and prover synthesize them.
    pub fn of(statement: &Statement, capacity: usize) -> Result<Shape, String> {
        Shape::of_kind(CircuitKind::of(statement), statement, capacity)
    }

    /// [`Shape::of`] for a chosen circuit (one that
    /// [`CircuitKind::proves`] the statement).
    pub fn of_kind(
        kind: CircuitKind,
        statement: &Statement,
        capacity: usize,
    ) -> Result<Shape, String> {
        if !kind.proves(statement) {
            return Err(format!(
                "the {kind:?} circuit does not prove this statement"
            ));
        }
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_optimization_goal(OptimizationGoal::Constraints);
        cs.set_mode(SynthesisMode::Setup);
        let synthesized = match kind {
            CircuitKind::Lanes => SumCircuit::shape(capacity).generate_constraints(cs.clone()),
            CircuitKind::Intervals => {
                IntervalCircuit::shape(statement.clone(), capacity).generate_constraints(cs.clone())
            }
            CircuitKind::Runs => {
                RunCircuit::shape(statement.clone(), capacity).generate_constraints(cs.clone())
            }
            CircuitKind::General => StatementCircuit::shape(statement.clone(), capacity)
                .generate_constraints(cs.clone()),
        };
        synthesized.map_err(|e| format!("the circuit does not synthesize: {e}"))?;
        cs.finalize();
        let mut matrices = cs.to_matrices().map_err(|e| e.to_string())?;
        let matrices = matrices
            .remove(R1CS_PREDICATE_LABEL)
            .ok_or("the circuit has no R1CS constraints")?;
        Ok(Shape {
            matrices,
            instance: cs.num_instance_variables(),
            witness: cs.num_witness_variables(),
        })
    }

    /// Its constraints.
    pub fn constraints(&self) -> usize {
        self.matrices[0].len()
    }

    /// The smallest powers-of-tau size that holds it: snarkjs needs
    /// 2^power >= constraints + public inputs + 1.
    pub fn power(&self) -> u32 {
        (self.constraints() + self.instance)
            .next_power_of_two()
            .trailing_zeros()
            .max(1)
    }

    /// Whether `pk` has this shape's numbers of variables, public inputs
    /// and H points (snarkjs verifies the rest against the circuit).
    pub fn admits(&self, pk: &ProvingKey<Bn254>) -> Result<(), String> {
        let domain = 1usize << self.power();
        if pk.a_query.len() != self.instance + self.witness
            || pk.vk.gamma_abc_g1.len() != self.instance
            || pk.h_query.len() != domain
        {
            return Err(format!(
                "the key has {} variables, {} public inputs and {} H points; the circuit {}, {} and {domain}",
                pk.a_query.len(),
                pk.vk.gamma_abc_g1.len().saturating_sub(1),
                pk.h_query.len(),
                self.instance + self.witness,
                self.instance - 1
            ));
        }
        Ok(())
    }

    /// The iden3 `.r1cs` file (version 1): header, constraints, and the
    /// wire-to-label map (the identity).
    pub fn r1cs(&self) -> Vec<u8> {
        let wires = self.instance + self.witness;
        let mut header = Vec::new();
        header.extend(32u32.to_le_bytes());
        header.extend(Fr::MODULUS.to_bytes_le());
        header.extend(u32_of(wires).to_le_bytes());
        header.extend(0u32.to_le_bytes()); // public outputs
        header.extend(u32_of(self.instance - 1).to_le_bytes()); // public inputs
        header.extend(0u32.to_le_bytes()); // private inputs
        header.extend((wires as u64).to_le_bytes()); // labels
        header.extend(u32_of(self.constraints()).to_le_bytes());

        let mut constraints = Vec::new();
        for row in 0..self.constraints() {
            for matrix in &self.matrices {
                let mut terms = matrix[row].clone();
                terms.sort_by_key(|(_, wire)| *wire);
                constraints.extend(u32_of(terms.len()).to_le_bytes());
                for (coefficient, wire) in terms {
                    constraints.extend(u32_of(wire).to_le_bytes());
                    constraints.extend(coefficient.into_bigint().to_bytes_le());
                }
            }
        }
        let labels: Vec<u8> = (0..wires as u64).flat_map(u64::to_le_bytes).collect();

        let mut out = Vec::new();
        out.extend(b"r1cs");
        out.extend(1u32.to_le_bytes());
        out.extend(3u32.to_le_bytes());
        for (kind, body) in [(1u32, header), (2, constraints), (3, labels)] {
            out.extend(kind.to_le_bytes());
            out.extend((body.len() as u64).to_le_bytes());
            out.extend(body);
        }
        out
    }
}

fn u32_of(n: usize) -> u32 {
    u32::try_from(n).expect("a circuit of fewer than 2^32 wires and constraints")
}

/// snarkjs' witness map: the evaluations of A·B − C on the odd points of
/// the domain of twice the size, which its H query (the Lagrange basis of
/// those points, over δ) turns into h(τ)·t(τ)/δ. Only the prover's half
/// is implemented: keys of this reduction come from a ceremony.
#[derive(Clone, Copy, Debug)]
pub struct CircomReduction;

impl R1CSToQAP for CircomReduction {
    fn instance_map_with_evaluation<F: PrimeField, D: EvaluationDomain<F>>(
        _: ConstraintSystemRef<F>,
        _: &F,
    ) -> Result<(Vec<F>, Vec<F>, Vec<F>, F, usize, usize), SynthesisError> {
        // Setting up is the ceremony's work, never ours.
        Err(SynthesisError::Unsatisfiable)
    }

    fn witness_map_from_matrices<F: PrimeField, D: EvaluationDomain<F>>(
        matrices: &[Matrix<F>],
        num_inputs: usize,
        num_constraints: usize,
        full_assignment: &[F],
    ) -> Result<Vec<F>, SynthesisError> {
        let domain =
            D::new(num_constraints + num_inputs).ok_or(SynthesisError::PolynomialDegreeTooLarge)?;
        let size = domain.size();
        let mut a = vec![F::zero(); size];
        let mut b = vec![F::zero(); size];
        let mut c = vec![F::zero(); size];
        for row in 0..num_constraints {
            a[row] = evaluate_constraint(&matrices[0][row], full_assignment);
            b[row] = evaluate_constraint(&matrices[1][row], full_assignment);
            c[row] = a[row] * b[row];
        }
        // The public inputs' constraints: input · 1 = 0 · 0 on the A side.
        a[num_constraints..num_constraints + num_inputs]
            .copy_from_slice(&full_assignment[..num_inputs]);

        // From evaluations on the domain to evaluations on its odd coset:
        // the root of unity of twice the size shifts every point.
        let shift = D::new(2 * size)
            .ok_or(SynthesisError::PolynomialDegreeTooLarge)?
            .element(1);
        for v in [&mut a, &mut b, &mut c] {
            domain.ifft_in_place(v);
            D::distribute_powers_and_mul_by_const(v, shift, F::one());
            domain.fft_in_place(v);
        }
        Ok(a.iter()
            .zip(&b)
            .zip(&c)
            .map(|((a, b), c)| *a * b - c)
            .collect())
    }

    fn h_query_scalars<F: PrimeField, D: EvaluationDomain<F>>(
        _: usize,
        _: F,
        _: F,
        _: F,
    ) -> Result<Vec<F>, SynthesisError> {
        Err(SynthesisError::Unsatisfiable)
    }
}

/// A `.zkey` file (snarkjs' Groth16 proving key) read into arkworks' form.
/// Every point is checked to be on its curve and in the prime-order
/// subgroup; any malformed or truncated file is an error, never a panic.
pub fn read_zkey(bytes: &[u8]) -> Result<ProvingKey<Bn254>, String> {
    let sections = sections(bytes, b"zkey")?;
    let section = |kind: u32| section(&sections, kind);
    if section(1)?.u32()? != 1 {
        return Err("not a Groth16 key (protocol id is not 1)".into());
    }
    let mut h = section(2)?;
    let modulus = |r: &mut Reader<'_>, what: &str, expected: Vec<u8>| -> Result<(), String> {
        let n8 = r.u32()? as usize;
        if n8 != 32 || r.take(32)? != expected.as_slice() {
            return Err(format!("its {what} field is not BN254's"));
        }
        Ok(())
    };
    modulus(&mut h, "base", Fq::MODULUS.to_bytes_le())?;
    modulus(&mut h, "scalar", Fr::MODULUS.to_bytes_le())?;
    let vars = h.u32()? as usize;
    let public = h.u32()? as usize;
    let domain = h.u32()? as usize;
    if public >= vars || !domain.is_power_of_two() {
        return Err(format!(
            "an inconsistent header: {vars} variables, {public} public, domain {domain}"
        ));
    }
    let alpha_g1 = h.g1()?;
    let beta_g1 = h.g1()?;
    let beta_g2 = h.g2()?;
    let gamma_g2 = h.g2()?;
    let delta_g1 = h.g1()?;
    let delta_g2 = h.g2()?;
    h.end(2)?;
    if [alpha_g1, beta_g1, delta_g1].iter().any(|p| p.is_zero())
        || [beta_g2, gamma_g2, delta_g2].iter().any(|p| p.is_zero())
    {
        return Err("α, β, γ or δ is the point at infinity".into());
    }
    let g1s = |kind: u32, n: usize| -> Result<Vec<G1Affine>, String> {
        let mut s = section(kind)?;
        let points = (0..n).map(|_| s.g1()).collect::<Result<Vec<_>, _>>()?;
        s.end(kind)?;
        Ok(points)
    };
    let mut b2 = section(7)?;
    let b_g2_query = (0..vars).map(|_| b2.g2()).collect::<Result<Vec<_>, _>>()?;
    b2.end(7)?;
    Ok(ProvingKey {
        vk: VerifyingKey {
            alpha_g1,
            beta_g2,
            gamma_g2,
            delta_g2,
            gamma_abc_g1: g1s(3, public + 1)?,
        },
        beta_g1,
        delta_g1,
        a_query: g1s(5, vars)?,
        b_g1_query: g1s(6, vars)?,
        b_g2_query,
        l_query: g1s(8, vars - public - 1)?,
        h_query: g1s(9, domain)?,
    })
}

/// The sections of an iden3 binary file (`.zkey`, `.ptau`): magic,
/// version, count, then per section its kind, length and body.
fn sections<'a>(bytes: &'a [u8], magic: &[u8; 4]) -> Result<Vec<(u32, &'a [u8])>, String> {
    let mut r = Reader(bytes);
    if r.take(4)? != magic {
        return Err(format!(
            "not a .{} file (no `{}` magic)",
            String::from_utf8_lossy(magic),
            String::from_utf8_lossy(magic)
        ));
    }
    let _version = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..r.u32()? {
        let kind = r.u32()?;
        let len = usize::try_from(r.u64()?).map_err(|_| "a section too large")?;
        out.push((kind, r.take(len)?));
    }
    Ok(out)
}

/// The one section of `kind`.
fn section<'a>(sections: &[(u32, &'a [u8])], kind: u32) -> Result<Reader<'a>, String> {
    let mut found = sections.iter().filter(|(k, _)| *k == kind);
    match (found.next(), found.next()) {
        (Some((_, body)), None) => Ok(Reader(body)),
        (None, _) => Err(format!("section {kind} is missing")),
        (Some(_), Some(_)) => Err(format!("section {kind} appears twice")),
    }
}

/// A contribution as a ceremony file records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The name its contributor gave (snarkjs hashes no name: it is a
    /// label, never evidence).
    pub name: String,
    /// SHA-256 (hex) of its public part as the file stores it: the points
    /// after it and its proofs of knowledge. Verification chains each
    /// contribution's points to the next, so the final key depends on the
    /// randomness of every contribution whose id the file lists.
    pub id: String,
}

/// The phase-1 contributions of a `.ptau` file (section 7): per
/// contribution τG1, τG2, αG1, βG1, βG2, its public key (768 bytes),
/// partial hash, next challenge, type and parameters.
pub fn ptau_contributions(bytes: &[u8]) -> Result<Vec<Recorded>, String> {
    let sections = sections(bytes, b"ptau")?;
    recorded(
        section(&sections, 7)?,
        64 + 128 + 64 + 64 + 128 + 768,
        216 + 64,
    )
}

/// The phase-2 contributions of a `.zkey` file (section 10, after the
/// circuit's 64-byte hash): per contribution δ after it, its proof of
/// knowledge (three points), its transcript, type and parameters.
pub fn zkey_contributions(bytes: &[u8]) -> Result<Vec<Recorded>, String> {
    let sections = sections(bytes, b"zkey")?;
    let mut s = section(&sections, 10)?;
    s.take(64)?;
    recorded(s, 64 + 64 + 64 + 128 + 64, 0)
}

fn recorded(mut s: Reader<'_>, public: usize, skip: usize) -> Result<Vec<Recorded>, String> {
    use sha2::{Digest, Sha256};
    let n = s.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let id = crate::attest::hex(&Sha256::digest(s.take(public)?));
        s.take(skip)?;
        let _type = s.u32()?;
        let len = s.u32()? as usize;
        let mut params = Reader(s.take(len)?);
        let mut name = String::new();
        while !params.0.is_empty() {
            match params.take(1)?[0] {
                1 => {
                    let n = params.take(1)?[0] as usize;
                    name = String::from_utf8_lossy(params.take(n)?).into_owned();
                }
                2 => {
                    params.take(1)?;
                }
                3 => {
                    let n = params.take(1)?[0] as usize;
                    params.take(n)?;
                }
                other => return Err(format!("a contribution parameter of unknown type {other}")),
            }
        }
        out.push(Recorded { name, id });
    }
    s.end(0)
        .map_err(|_| "the contributions section holds more than its contributions".to_string())?;
    Ok(out)
}

/// A cursor over a byte slice whose reads fail past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("the file ends early".into());
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn end(&self, kind: u32) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "section {kind} holds more points than its header says"
            ))
        }
    }

    /// A base-field element in Montgomery form, below the modulus.
    fn fq(&mut self) -> Result<Fq, String> {
        let mut limbs = [0u64; 4];
        for limb in &mut limbs {
            *limb = self.u64()?;
        }
        let raw = ark_ff::BigInt(limbs);
        if raw >= Fq::MODULUS {
            return Err("a coordinate is not below the base field's modulus".into());
        }
        Ok(Fq::new_unchecked(raw))
    }

    fn g1(&mut self) -> Result<G1Affine, String> {
        let (x, y) = (self.fq()?, self.fq()?);
        checked_g1(x, y)
    }

    fn g2(&mut self) -> Result<G2Affine, String> {
        let x = Fq2::new(self.fq()?, self.fq()?);
        let y = Fq2::new(self.fq()?, self.fq()?);
        if x.is_zero() && y.is_zero() {
            return Ok(G2Affine::identity());
        }
        let p = G2Affine::new_unchecked(x, y);
        if !p.is_on_curve() || !p.is_in_correct_subgroup_assuming_on_curve() {
            return Err("a G2 point is not in BN254's prime-order subgroup".into());
        }
        Ok(p)
    }
}

fn checked_g1(x: Fq, y: Fq) -> Result<G1Affine, String> {
    if x.is_zero() && y.is_zero() {
        return Ok(G1Affine::identity());
    }
    let p = G1Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err("a G1 point is not on BN254".into());
    }
    Ok(p)
}

/// snarkjs: `$SNARKJS`, or where `scripts/setup` installs it
/// (`~/.cache/symbiont/snarkjs`), or `snarkjs` on the `PATH`.
pub fn snarkjs() -> Option<std::path::PathBuf> {
    use std::path::{Path, PathBuf};
    if let Some(p) = std::env::var_os("SNARKJS").filter(|p| !p.is_empty()) {
        return Some(p.into());
    }
    let cache = match std::env::var_os("XDG_CACHE_HOME").filter(|c| !c.is_empty()) {
        Some(c) => Some(PathBuf::from(c)),
        None => std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")),
    };
    if let Some(installed) = cache
        .map(|c| c.join("symbiont/snarkjs/node_modules/.bin/snarkjs"))
        .filter(|p| p.is_file())
    {
        return Some(installed);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("snarkjs"))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::seniors;

    #[test]
    fn the_r1cs_header_counts_wires_and_constraints() {
        let shape = Shape::of(&seniors(), 4).unwrap();
        let r1cs = shape.r1cs();
        assert_eq!(&r1cs[..4], b"r1cs");
        // Section 1 starts after magic, version, count, kind and length.
        let header = &r1cs[4 + 4 + 4 + 4 + 8..];
        let at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap()) as usize;
        assert_eq!(at(0), 32);
        assert_eq!(at(36), shape.instance + shape.witness);
        assert_eq!(at(44), shape.instance - 1);
        assert_eq!(at(60), shape.constraints());
        // commitment, count, threshold, count, sum
        assert_eq!(shape.instance, 6);
        assert!(1 << shape.power() >= shape.constraints() + shape.instance);
    }

    #[test]
    fn a_malformed_zkey_is_an_error_not_a_panic() {
        assert!(read_zkey(b"").is_err());
        assert!(read_zkey(b"zkey\x01\0\0\0\x01\0\0\0\x01\0\0\0\xff\xff\xff\xff\0\0\0\0").is_err());
        assert!(read_zkey(b"r1cs\x01\0\0\0\0\0\0\0").is_err());
    }
}
