//! A statement over a whole dataset: its keys, its chunks' commitments and
//! proofs, and the check a verifier runs.
//!
//! The dataset is cut into chunks of `capacity` records, each committed
//! under its own salt ([`crate::commit`]) and proved on its own, so the
//! prover's memory is one chunk's constraint system however large the
//! dataset. The verifier checks every chunk's proof against that chunk's
//! commitment and outputs, recomputes the dataset commitment from the
//! chunks' commitments in order (the owner signs that one: dropping,
//! repeating or moving a chunk changes it), and adds the chunks' outputs
//! into the totals it reports.

use std::path::{Path, PathBuf};

use ark_bn254::Bn254;
use ark_groth16::{Groth16, Proof, ProvingKey};
use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use ark_snark::SNARK;
use ark_std::rand::{CryptoRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::Fr;
use crate::commit;
use crate::intervals::{self, IntervalCircuit};
use crate::runs::{self, RunCircuit};
use crate::statement::{Kind, Statement, StatementCircuit, public_inputs, reference};
use crate::sum::SumCircuit;

/// Bumped whenever a circuit changes: keys of another version are not
/// reused. (Declared widths and the interval and run circuits left it at
/// 2: a statement with widths has another shape id, the interval and run
/// circuits have their own, and the general and lane-sum circuits are
/// unchanged.)
pub const CIRCUIT_VERSION: u32 = 2;

/// The circuit a statement is proved with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CircuitKind {
    /// [`SumCircuit`]: one field, no filters.
    Lanes,
    /// [`IntervalCircuit`]: every comparison on one field (at least one
    /// of them `>=` or `<`), or none, and at most
    /// [`crate::intervals::MAX_FILTER_SETS`] filter sets.
    Intervals,
    /// [`RunCircuit`]: an interval statement whose key has a declared
    /// width of at most [`crate::runs::MAX_KEY_BITS`].
    Runs,
    /// [`StatementCircuit`].
    General,
}

impl CircuitKind {
    /// The circuit for `statement`.
    pub fn of(statement: &Statement) -> CircuitKind {
        let sums = statement
            .aggregates
            .iter()
            .any(|a| matches!(a.kind, Kind::Sum(_)));
        if statement.lanes() && sums {
            CircuitKind::Lanes
        } else if runs::key(statement).is_some() {
            CircuitKind::Runs
        } else if intervals::key(statement).is_some() {
            CircuitKind::Intervals
        } else {
            CircuitKind::General
        }
    }

    /// Whether this circuit can prove `statement` for a verifier: its own
    /// ([`CircuitKind::of`], the fastest), the interval circuit for a run
    /// statement, or the general circuit for either (same public inputs;
    /// a grouping's statement is committed for the general circuit before
    /// it is known, and bundles made before a faster circuit existed keep
    /// the one they were proved with).
    pub fn proves(self, statement: &Statement) -> bool {
        use CircuitKind::*;
        let own = CircuitKind::of(statement);
        self == own
            || matches!(
                (self, own),
                (Intervals, Runs) | (General, Intervals) | (General, Runs)
            )
    }
}

/// A circuit shape's identity: what its keys depend on (the statement
/// without its thresholds, which are public inputs, and the capacity).
pub fn shape_id(statement: &Statement, capacity: usize) -> String {
    shape_id_for(CircuitKind::of(statement), statement, capacity)
}

/// The circuits that may prove `statement` ([`CircuitKind::proves`]),
/// its own first.
fn provers(statement: &Statement) -> Vec<CircuitKind> {
    let own = CircuitKind::of(statement);
    let mut kinds = vec![own];
    for k in [CircuitKind::Intervals, CircuitKind::General] {
        if k != own && k.proves(statement) {
            kinds.push(k);
        }
    }
    kinds
}

/// The shapes whose keys may prove `statement` ([`CircuitKind::proves`]):
/// its own circuit's and, for a run or interval statement, the slower
/// circuits' that proved such statements before (the general circuit
/// also proves a grouping's).
pub fn shape_ids(statement: &Statement, capacity: usize) -> Vec<String> {
    provers(statement)
        .into_iter()
        .map(|k| shape_id_for(k, statement, capacity))
        .collect()
}

/// The circuit whose shape `shape` is, among those that may prove
/// `statement` ([`shape_ids`]).
pub fn kind_of_shape(statement: &Statement, capacity: usize, shape: &str) -> Option<CircuitKind> {
    provers(statement)
        .into_iter()
        .find(|k| shape_id_for(*k, statement, capacity) == shape)
}

/// The identity of `kind`'s shape for `statement`.
pub fn shape_id_for(kind: CircuitKind, statement: &Statement, capacity: usize) -> String {
    let mut shape = statement.clone();
    for c in &mut shape.comparisons {
        c.threshold = 0;
    }
    let text = serde_json::json!({
        "version": CIRCUIT_VERSION,
        "circuit": format!("{kind:?}"),
        "statement": shape,
        "capacity": capacity,
    })
    .to_string();
    hex(&Sha256::digest(text.as_bytes()))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A generator seeded from the operating system's.
pub fn os_rng() -> ark_std::rand::rngs::StdRng {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).expect("the operating system's random generator");
    ark_std::rand::rngs::StdRng::from_seed(seed)
}

/// A verifying key over BN254.
pub type VerifyingKey = ark_groth16::VerifyingKey<Bn254>;

/// Where a shape's keys come from, which decides how the prover maps the
/// witness onto the QAP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// [`Keys::setup`]: one party, arkworks' reduction.
    Local,
    /// A snarkjs ceremony's `.zkey` ([`crate::ceremony`]).
    Ceremony,
}

/// A shape's Groth16 keys.
pub struct Keys {
    /// The proving key.
    pub pk: ProvingKey<Bn254>,
    /// The verifying key (also inside `pk`).
    pub vk: VerifyingKey,
    /// Who made them.
    pub setup: Setup,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("public_inputs", &(self.vk.gamma_abc_g1.len() - 1))
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// A trusted setup for the shape: whoever runs it and keeps its
    /// randomness could forge proofs (ours is dropped when this returns).
    pub fn setup<R: RngCore + CryptoRng>(
        statement: &Statement,
        capacity: usize,
        rng: &mut R,
    ) -> Keys {
        Keys::setup_for(CircuitKind::of(statement), statement, capacity, rng)
    }

    /// [`Keys::setup`] for a chosen circuit (benchmarks compare them).
    pub fn setup_for<R: RngCore + CryptoRng>(
        kind: CircuitKind,
        statement: &Statement,
        capacity: usize,
        rng: &mut R,
    ) -> Keys {
        assert!(kind.proves(statement));
        let (pk, vk) = match kind {
            CircuitKind::Lanes => {
                Groth16::<Bn254>::circuit_specific_setup(SumCircuit::shape(capacity), rng)
            }
            CircuitKind::Intervals => Groth16::<Bn254>::circuit_specific_setup(
                IntervalCircuit::shape(statement.clone(), capacity),
                rng,
            ),
            CircuitKind::Runs => Groth16::<Bn254>::circuit_specific_setup(
                RunCircuit::shape(statement.clone(), capacity),
                rng,
            ),
            CircuitKind::General => Groth16::<Bn254>::circuit_specific_setup(
                StatementCircuit::shape(statement.clone(), capacity),
                rng,
            ),
        }
        .expect("a well-formed statement synthesizes");
        Keys {
            pk,
            vk,
            setup: Setup::Local,
        }
    }

    /// The keys of a ceremony's final `.zkey` ([`crate::ceremony::read_zkey`]).
    pub fn from_zkey(bytes: &[u8]) -> Result<Keys, String> {
        let pk = crate::ceremony::read_zkey(bytes)?;
        Ok(Keys {
            vk: pk.vk.clone(),
            pk,
            setup: Setup::Ceremony,
        })
    }

    /// The shape's keys from `dir`, set up (and saved there) on first
    /// use; also says whether they were made now.
    pub fn load_or_setup(
        dir: &Path,
        statement: &Statement,
        capacity: usize,
    ) -> std::io::Result<(Keys, bool)> {
        Keys::load_or_setup_for(CircuitKind::of(statement), dir, statement, capacity)
    }

    /// [`Keys::load_or_setup`] for a chosen circuit (one that
    /// [`CircuitKind::proves`] the statement).
    pub fn load_or_setup_for(
        kind: CircuitKind,
        dir: &Path,
        statement: &Statement,
        capacity: usize,
    ) -> std::io::Result<(Keys, bool)> {
        let path = dir.join(format!("{}.pk", shape_id_for(kind, statement, capacity)));
        if let Ok(bytes) = std::fs::read(&path) {
            // Our own file: read without the (slow) subgroup checks, but a
            // truncated or foreign file is an error, not a panic.
            let pk = ProvingKey::<Bn254>::deserialize_uncompressed_unchecked(&bytes[..])
                .map_err(|e| invalid(&path, e))?;
            let vk = pk.vk.clone();
            let keys = Keys {
                pk,
                vk,
                setup: Setup::Local,
            };
            return Ok((keys, false));
        }
        let keys = Keys::setup_for(kind, statement, capacity, &mut os_rng());
        std::fs::create_dir_all(dir)?;
        let mut bytes = Vec::new();
        keys.pk
            .serialize_uncompressed(&mut bytes)
            .expect("serializing into memory");
        let tmp = PathBuf::from(format!("{}.tmp", path.display()));
        std::fs::write(&tmp, &bytes)?;
        std::fs::rename(&tmp, &path)?;
        Ok((keys, true))
    }
}

fn invalid(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: not a proving key: {e}", path.display()),
    )
}

/// One chunk as the verifier sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Chunk {
    /// Its commitment.
    pub commitment: Fr,
    /// Its records.
    pub records: u64,
    /// Its outputs, in [`Statement::output_len`] order.
    pub outputs: Vec<u64>,
    /// The proof.
    pub proof: Proof<Bn254>,
}

/// A chunk's public inputs for `kind`, or why its outputs cannot be
/// those of the lane circuit.
pub fn chunk_public(statement: &Statement, chunk: &Chunk) -> Result<Vec<Fr>, String> {
    if chunk.outputs.len() != statement.output_len() {
        return Err(format!(
            "{} outputs, the statement has {}",
            chunk.outputs.len(),
            statement.output_len()
        ));
    }
    match CircuitKind::of(statement) {
        CircuitKind::General | CircuitKind::Intervals | CircuitKind::Runs => Ok(public_inputs(
            statement,
            chunk.commitment,
            chunk.records,
            &chunk.outputs,
        )),
        CircuitKind::Lanes => {
            // Every count is the record count, every sum the one sum.
            let mut sum = None;
            let mut out = chunk.outputs.iter();
            for a in &statement.aggregates {
                if *out.next().expect("length checked") != chunk.records {
                    return Err("a count other than the record count".into());
                }
                if let Kind::Sum(_) = a.kind {
                    let s = *out.next().expect("length checked");
                    if sum.is_some_and(|x| x != s) {
                        return Err("two different sums of the one field".into());
                    }
                    sum = Some(s);
                }
            }
            let sum = sum.ok_or("no sum")?;
            Ok(vec![
                chunk.commitment,
                Fr::from(chunk.records),
                Fr::from(sum),
            ])
        }
    }
}

/// What the owner computes at ingestion: per chunk its salt, its values
/// and its commitment. Salts and values are secret: `Debug` shows neither.
pub struct Committed {
    /// The circuit whose layout the chunks are committed in.
    pub kind: CircuitKind,
    /// Records per chunk.
    pub capacity: usize,
    /// Values per record.
    pub fields: usize,
    /// Per chunk: salt, values, commitment.
    pub chunks: Vec<(Fr, Vec<u32>, Fr)>,
}

impl std::fmt::Debug for Committed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committed")
            .field("kind", &self.kind)
            .field("capacity", &self.capacity)
            .field("fields", &self.fields)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

impl Committed {
    /// Commits `values` (`fields` per record) in chunks of `capacity`
    /// records, each under a fresh salt, in the layout of `statement`'s
    /// circuit (for the interval circuit: each chunk in key order, column
    /// by column). A grouping's statement is known only after the job, and
    /// is proved by the general circuit: `kind` says which layout to use.
    pub fn new(
        kind: CircuitKind,
        statement: &Statement,
        values: &[u32],
        capacity: usize,
    ) -> Committed {
        let fields = statement.fields;
        assert!(fields > 0 && values.len().is_multiple_of(fields) && capacity > 0);
        let one = |values: Vec<u32>| {
            let salt = commit::salt();
            let commitment = match kind {
                CircuitKind::Intervals => commit::commit_columns(salt, &values, fields, capacity),
                CircuitKind::Runs => runs::commit(statement, salt, &values, capacity),
                CircuitKind::Lanes | CircuitKind::General => {
                    commit::commit(salt, &values, fields, capacity)
                }
            };
            (salt, values, commitment)
        };
        let mut chunks: Vec<(Fr, Vec<u32>, Fr)> = values
            .chunks(capacity * fields)
            .map(|c| match kind {
                CircuitKind::Intervals => one(intervals::key_order(statement, c)),
                CircuitKind::Lanes | CircuitKind::General | CircuitKind::Runs => one(c.to_vec()),
            })
            .collect();
        if chunks.is_empty() {
            chunks.push(one(Vec::new()));
        }
        Committed {
            kind,
            capacity,
            fields,
            chunks,
        }
    }

    /// The dataset's commitment (what the owner signs).
    pub fn dataset(&self) -> Fr {
        let c: Vec<Fr> = self.chunks.iter().map(|c| c.2).collect();
        commit::dataset(&c)
    }

    /// Proves `statement` over every chunk, one after another (each
    /// parallel inside: arkworks' MSMs and FFTs), so the prover holds one
    /// chunk's constraint system at a time. (Proving chunks side by side
    /// on rayon gained nothing on two cores and held several chunks at
    /// once: 5.6 GiB for 1M records.)
    pub fn prove<R: RngCore + CryptoRng>(
        &self,
        keys: &Keys,
        statement: &Statement,
        rng: &mut R,
    ) -> Vec<Chunk> {
        assert_eq!(statement.fields, self.fields);
        assert!(self.kind.proves(statement), "committed in its layout");
        self.chunks
            .iter()
            .map(|(salt, values, commitment)| {
                let outputs = reference(statement, values);
                let records = (values.len() / self.fields) as u64;
                let proof = match self.kind {
                    CircuitKind::Lanes => prove_one(
                        keys,
                        SumCircuit::chunk(self.capacity, *salt, values.clone()),
                        rng,
                    ),
                    CircuitKind::Intervals => prove_one(
                        keys,
                        IntervalCircuit::chunk(
                            statement.clone(),
                            self.capacity,
                            *salt,
                            values.clone(),
                        ),
                        rng,
                    ),
                    CircuitKind::Runs => prove_one(
                        keys,
                        RunCircuit::chunk(statement.clone(), self.capacity, *salt, values.clone()),
                        rng,
                    ),
                    CircuitKind::General => prove_one(
                        keys,
                        StatementCircuit::chunk(
                            statement.clone(),
                            self.capacity,
                            *salt,
                            values.clone(),
                        ),
                        rng,
                    ),
                }
                .expect("an honest chunk proves");
                Chunk {
                    commitment: *commitment,
                    records,
                    outputs,
                    proof,
                }
            })
            .collect()
    }
}

/// One proof under `keys`, with the reduction their setup needs.
fn prove_one<C, R>(
    keys: &Keys,
    circuit: C,
    rng: &mut R,
) -> Result<Proof<Bn254>, ark_relations::gr1cs::SynthesisError>
where
    C: ark_relations::gr1cs::ConstraintSynthesizer<Fr>,
    R: RngCore + CryptoRng,
{
    match keys.setup {
        Setup::Local => Groth16::<Bn254>::prove(&keys.pk, circuit, rng),
        Setup::Ceremony => {
            Groth16::<Bn254, crate::ceremony::CircomReduction>::prove(&keys.pk, circuit, rng)
        }
    }
}

/// Checks every chunk's proof and returns the dataset commitment the
/// chunks add up to and the totals of their outputs, or the first chunk
/// that fails and why.
///
/// The proofs are checked together: with fresh 128-bit random weights
/// r_i, Π e(r_i·A_i, B_i) · e(Σ r_i·L_i, −γ) · e(Σ r_i·C_i, −δ) =
/// e(α, β)^(Σ r_i) — one Miller loop per proof and one final
/// exponentiation instead of one each. A false proof passes that with
/// probability below 2^-128. When it fails, each proof is checked on its
/// own to name the failing one.
pub fn verify(
    vk: &VerifyingKey,
    statement: &Statement,
    chunks: &[Chunk],
) -> Result<(Fr, Vec<u64>), (usize, String)> {
    statement.check().map_err(|why| (0, why))?;
    let pvk = Groth16::<Bn254>::process_vk(vk).map_err(|e| (0, e.to_string()))?;
    let mut totals = vec![0u64; statement.output_len()];
    let mut publics = Vec::with_capacity(chunks.len());
    for (i, chunk) in chunks.iter().enumerate() {
        let public = chunk_public(statement, chunk).map_err(|why| (i, why))?;
        if pvk.vk.gamma_abc_g1.len() != public.len() + 1 {
            return Err((
                i,
                format!(
                    "the verifying key takes {} public inputs, the chunk has {}",
                    pvk.vk.gamma_abc_g1.len().saturating_sub(1),
                    public.len()
                ),
            ));
        }
        for (t, o) in totals.iter_mut().zip(&chunk.outputs) {
            *t = t
                .checked_add(*o)
                .ok_or((i, "the totals overflow".to_string()))?;
        }
        publics.push(public);
    }
    if !batch_verifies(&pvk, chunks, &publics) {
        for (i, (chunk, public)) in chunks.iter().zip(&publics).enumerate() {
            if !Groth16::<Bn254>::verify_with_processed_vk(&pvk, public, &chunk.proof)
                .unwrap_or(false)
            {
                return Err((i, "the proof does not verify".into()));
            }
        }
        return Err((0, "the proofs do not verify together".into()));
    }
    let commitments: Vec<Fr> = chunks.iter().map(|c| c.commitment).collect();
    Ok((commit::dataset(&commitments), totals))
}

/// The batched pairing check of [`verify`].
fn batch_verifies(
    pvk: &ark_groth16::PreparedVerifyingKey<Bn254>,
    chunks: &[Chunk],
    publics: &[Vec<Fr>],
) -> bool {
    use ark_ec::CurveGroup;
    use ark_ec::pairing::Pairing;
    use ark_ff::{Field, PrimeField, Zero};
    use ark_std::rand::Rng;

    let mut rng = os_rng();
    let (mut weights, mut inputs, mut cs) = (
        Fr::zero(),
        ark_bn254::G1Projective::zero(),
        ark_bn254::G1Projective::zero(),
    );
    let mut g1: Vec<<Bn254 as Pairing>::G1Prepared> = Vec::with_capacity(chunks.len() + 2);
    let mut g2: Vec<<Bn254 as Pairing>::G2Prepared> = Vec::with_capacity(chunks.len() + 2);
    for (chunk, public) in chunks.iter().zip(publics) {
        let r = Fr::from(rng.r#gen::<u128>() | 1);
        let Ok(l) = Groth16::<Bn254>::prepare_inputs(pvk, public) else {
            return false;
        };
        inputs += l * r;
        cs += chunk.proof.c * r;
        weights += r;
        g1.push((chunk.proof.a * r).into_affine().into());
        g2.push(chunk.proof.b.into());
    }
    g1.push(inputs.into_affine().into());
    g2.push(pvk.gamma_g2_neg_pc.clone());
    g1.push(cs.into_affine().into());
    g2.push(pvk.delta_g2_neg_pc.clone());
    let product = Bn254::multi_miller_loop(g1, g2);
    Bn254::final_exponentiation(product)
        .is_some_and(|t| t.0 == pvk.alpha_g1_beta_g2.pow(weights.into_bigint()))
}

/// The bundle's encodings: proofs and verifying keys compressed (as
/// arkworks serializes them), field elements as decimal strings.
pub mod encoding {
    use std::str::FromStr;

    use ark_bn254::Bn254;
    use ark_groth16::Proof;

    use super::VerifyingKey;
    use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};

    use crate::Fr;

    /// A proof's 128 bytes.
    pub fn proof_bytes(proof: &Proof<Bn254>) -> Vec<u8> {
        let mut out = Vec::new();
        proof.serialize_compressed(&mut out).expect("into memory");
        out
    }

    /// A proof from its bytes (points checked on the curve and in the
    /// subgroup).
    pub fn proof_from(bytes: &[u8]) -> Result<Proof<Bn254>, String> {
        Proof::deserialize_compressed(bytes).map_err(|e| e.to_string())
    }

    /// A verifying key's bytes.
    pub fn vk_bytes(vk: &VerifyingKey) -> Vec<u8> {
        let mut out = Vec::new();
        vk.serialize_compressed(&mut out).expect("into memory");
        out
    }

    /// A verifying key from its bytes (checked).
    pub fn vk_from(bytes: &[u8]) -> Result<VerifyingKey, String> {
        VerifyingKey::deserialize_compressed(bytes).map_err(|e| e.to_string())
    }

    /// A field element in decimal.
    pub fn fr_text(x: &Fr) -> String {
        x.to_string()
    }

    /// A field element from decimal: canonical (below the modulus, no
    /// sign, no leading zeros) or an error.
    pub fn fr_from(text: &str) -> Result<Fr, String> {
        let x = Fr::from_str(text).map_err(|_| format!("`{text}` is not a field element"))?;
        if x.to_string() != text {
            return Err(format!("`{text}` is not a canonical field element"));
        }
        Ok(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{Aggregate, seniors};

    #[test]
    fn chunks_prove_verify_and_add_up() {
        let mut rng = ark_std::rand::rngs::StdRng::seed_from_u64(1);
        let statement = seniors();
        let keys = Keys::setup(&statement, 8, &mut rng);
        // 20 records in chunks of 8: 8, 8, 4.
        let values: Vec<u32> = (0..20u32).flat_map(|i| [50 + i, 100 * i]).collect();
        let committed = Committed::new(CircuitKind::of(&statement), &statement, &values, 8);
        let chunks = committed.prove(&keys, &statement, &mut rng);
        assert_eq!(chunks.len(), 3);
        let (dataset, totals) = verify(&keys.vk, &statement, &chunks).unwrap();
        assert_eq!(dataset, committed.dataset());
        assert_eq!(totals, reference(&statement, &values));

        // A changed output, a dropped or repeated chunk, a threshold.
        let mut wrong = chunks.clone();
        wrong[1].outputs[1] += 1;
        assert_eq!(verify(&keys.vk, &statement, &wrong).unwrap_err().0, 1);
        let dropped = &chunks[..2];
        assert_ne!(verify(&keys.vk, &statement, dropped).unwrap().0, dataset);
        let repeated = [chunks.clone(), vec![chunks[2].clone()]].concat();
        assert_ne!(verify(&keys.vk, &statement, &repeated).unwrap().0, dataset);
        let mut other = statement.clone();
        other.comparisons[0].threshold = 60;
        assert!(verify(&keys.vk, &other, &chunks).is_err());
    }

    #[test]
    fn a_run_statement_proves_in_its_circuit_and_in_the_interval_circuit() {
        // Ages declared in 8 bits: the run circuit; bundles made before it
        // (the interval circuit) keep verifying.
        let mut rng = ark_std::rand::rngs::StdRng::seed_from_u64(4);
        let statement = Statement {
            widths: vec![8, 32],
            ..seniors()
        };
        assert_eq!(CircuitKind::of(&statement), CircuitKind::Runs);
        assert_eq!(shape_ids(&statement, 12).len(), 3);
        let values: Vec<u32> = (0..30u32).flat_map(|i| [(i * 37) % 151, 100 * i]).collect();
        for kind in [CircuitKind::Runs, CircuitKind::Intervals] {
            let id = shape_id_for(kind, &statement, 12);
            assert_eq!(kind_of_shape(&statement, 12, &id), Some(kind));
            let keys = Keys::setup_for(kind, &statement, 12, &mut rng);
            let committed = Committed::new(kind, &statement, &values, 12);
            let chunks = committed.prove(&keys, &statement, &mut rng);
            let (dataset, totals) = verify(&keys.vk, &statement, &chunks).unwrap();
            assert_eq!(dataset, committed.dataset());
            assert_eq!(totals, reference(&statement, &values), "{kind:?}");
            let mut wrong = chunks.clone();
            wrong[2].outputs[1] += 1;
            assert_eq!(verify(&keys.vk, &statement, &wrong).unwrap_err().0, 2);
        }
    }

    #[test]
    fn the_general_circuit_still_proves_an_interval_statement() {
        // Bundles made before the interval circuit, and groupings: the
        // same statement and public inputs under the general circuit.
        let mut rng = ark_std::rand::rngs::StdRng::seed_from_u64(3);
        let statement = seniors();
        assert_eq!(CircuitKind::of(&statement), CircuitKind::Intervals);
        assert!(CircuitKind::General.proves(&statement));
        let ids = shape_ids(&statement, 8);
        assert_eq!(ids.len(), 2);
        assert_eq!(
            kind_of_shape(&statement, 8, &ids[1]),
            Some(CircuitKind::General)
        );
        let keys = Keys::setup_for(CircuitKind::General, &statement, 8, &mut rng);
        let values: Vec<u32> = (0..20u32).flat_map(|i| [50 + i, 100 * i]).collect();
        let committed = Committed::new(CircuitKind::General, &statement, &values, 8);
        let chunks = committed.prove(&keys, &statement, &mut rng);
        let (_, totals) = verify(&keys.vk, &statement, &chunks).unwrap();
        assert_eq!(totals, reference(&statement, &values));
        // Not the other way: the lane-sum statement has its own inputs.
        let plain = Statement {
            fields: 1,
            comparisons: vec![],
            aggregates: vec![Aggregate {
                kind: Kind::Sum(0),
                filters: vec![],
            }],
            widths: Vec::new(),
        };
        assert!(!CircuitKind::General.proves(&plain));
        assert_eq!(shape_ids(&plain, 8).len(), 1);
    }

    #[test]
    fn the_lane_circuit_proves_a_plain_sum() {
        let mut rng = ark_std::rand::rngs::StdRng::seed_from_u64(2);
        let statement = Statement {
            fields: 1,
            comparisons: vec![],
            aggregates: vec![
                Aggregate {
                    kind: Kind::Count,
                    filters: vec![],
                },
                Aggregate {
                    kind: Kind::Sum(0),
                    filters: vec![],
                },
            ],
            widths: Vec::new(),
        };
        assert_eq!(CircuitKind::of(&statement), CircuitKind::Lanes);
        let keys = Keys::setup(&statement, 60, &mut rng);
        let values: Vec<u32> = (1..=100).collect();
        let committed = Committed::new(CircuitKind::Lanes, &statement, &values, 60);
        let chunks = committed.prove(&keys, &statement, &mut rng);
        let (_, totals) = verify(&keys.vk, &statement, &chunks).unwrap();
        assert_eq!(totals, vec![100, 100, 5050]);
        // A count that is not the record count is refused before any
        // pairing; another sum (and record count) does not verify.
        let mut wrong = chunks.clone();
        wrong[0].outputs[0] += 1;
        assert!(verify(&keys.vk, &statement, &wrong).is_err());
        let mut wrong = chunks.clone();
        wrong[1].outputs[2] += 1;
        let (chunk, why) = verify(&keys.vk, &statement, &wrong).unwrap_err();
        assert_eq!((chunk, why.as_str()), (1, "the proof does not verify"));
        let mut wrong = chunks.clone();
        wrong[1].records -= 1;
        wrong[1].outputs[0] -= 1;
        wrong[1].outputs[1] -= 1;
        assert_eq!(verify(&keys.vk, &statement, &wrong).unwrap_err().0, 1);
        // One chunk's proof is not another's.
        let mut swapped = chunks.clone();
        swapped[0].proof = chunks[1].proof.clone();
        assert_eq!(verify(&keys.vk, &statement, &swapped).unwrap_err().0, 0);
    }

    #[test]
    fn keys_are_cached_per_shape_not_per_threshold() {
        let dir = std::env::temp_dir().join(format!("symbi-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let statement = seniors();
        let (keys, created) = Keys::load_or_setup(&dir, &statement, 6).unwrap();
        assert!(created);
        let mut other = statement.clone();
        other.comparisons[0].threshold = 18;
        let (again, created) = Keys::load_or_setup(&dir, &other, 6).unwrap();
        assert!(!created);
        assert_eq!(keys.vk, again.vk);
        let (_, created) = Keys::load_or_setup(&dir, &statement, 12).unwrap();
        assert!(created, "another capacity is another shape");
        std::fs::write(dir.join(format!("{}.pk", shape_id(&statement, 6))), b"junk").unwrap();
        assert!(Keys::load_or_setup(&dir, &statement, 6).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
