//! Attested sums: commit + prove, against the naive construction.
//!
//! - `attestation/commit_prove_chunk`: one chunk of 12,276 records —
//!   the commitment (Poseidon over the packed values) and its Groth16
//!   proof (the lane-sum circuit, `symbiont_circuits::sum`), criterion's
//!   median.
//! - `attestation/verify`: one chunk's proof checked against its public
//!   inputs (`symbiont_circuits::attest::verify` of one chunk).
//! - `attestation/filtered_chunk_*`: one chunk of a count and a sum behind
//!   `age >= 65` (`clinic_costs`' statement), committed and proved by the
//!   general circuit (2,048 records), by the interval circuit with 32-bit
//!   ages, and with ages declared in `0..=150`.
//! - With `SYMBI_BENCH_FILTERED=N`: the same three over N records, whole
//!   (setup, commit + prove, verify), written as JSON to `SYMBI_BENCH_OUT`.
//! - With `SYMBI_BENCH_ATTEST=N` (run by `benches/attestation.sh`): the
//!   naive construction — per value a width-3 Poseidon hash (chaining the
//!   commitment) and a 32-bit range check — set up, proved and timed once
//!   on N values; then 1,000,000 records attested chunk by chunk, timed,
//!   with the peak memory of each part; written
//!   as JSON to `SYMBI_BENCH_OUT`.

use std::time::Instant;

use ark_bn254::{Bn254, Fr};
use ark_crypto_primitives::sponge::CryptographicSponge;
use ark_crypto_primitives::sponge::constraints::CryptographicSpongeVar;
use ark_crypto_primitives::sponge::poseidon::constraints::PoseidonSpongeVar;
use ark_crypto_primitives::sponge::poseidon::{
    PoseidonConfig, PoseidonSponge, find_poseidon_ark_and_mds,
};
use ark_groth16::Groth16;
use ark_r1cs_std::alloc::AllocVar;
use ark_r1cs_std::boolean::Boolean;
use ark_r1cs_std::eq::EqGadget;
use ark_r1cs_std::fields::FieldVar;
use ark_r1cs_std::fields::fp::FpVar;
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};
use ark_snark::SNARK;
use ark_std::rand::SeedableRng;
use ark_std::rand::rngs::StdRng;
use criterion::{Criterion, criterion_group};

mod common;
use symbiont_circuits::attest::{self, Chunk, CircuitKind, Committed, Keys};
use symbiont_circuits::statement::{Aggregate, Comparison, Kind, Op, Statement};

/// Records per chunk: `symbi run --bundle`'s chunk for the lane circuit.
const CHUNK: usize = symbiont_circuits::sum::CHUNK;

/// A plain count and sum of one field: the lane circuit's statement.
fn sum_statement() -> Statement {
    let aggregate = |kind| Aggregate {
        kind,
        filters: Vec::new(),
    };
    Statement {
        fields: 1,
        comparisons: Vec::new(),
        aggregates: vec![aggregate(Kind::Count), aggregate(Kind::Sum(0))],
        widths: Vec::new(),
    }
}

/// Commitment and proofs of `values`: the whole attestation.
fn attest_all(keys: &Keys, values: &[u32], rng: &mut StdRng) -> (Fr, Vec<Chunk>) {
    let committed = Committed::new(CircuitKind::Lanes, &sum_statement(), values, CHUNK);
    (
        committed.dataset(),
        committed.prove(keys, &sum_statement(), rng),
    )
}

fn bench(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let statement = sum_statement();
    assert_eq!(CircuitKind::of(&statement), CircuitKind::Lanes);
    let keys = Keys::setup(&statement, CHUNK, &mut rng);
    let v = common::values(CHUNK, 7);
    let mut g = c.benchmark_group("attestation");
    // A proof takes seconds: ten samples of one iteration each.
    g.sample_size(10);
    g.sampling_mode(criterion::SamplingMode::Flat);
    g.throughput(criterion::Throughput::Elements(CHUNK as u64));
    g.bench_function("commit_prove_chunk", |b| {
        b.iter(|| attest_all(&keys, &v, &mut rng))
    });
    let (_, chunks) = attest_all(&keys, &v, &mut rng);
    g.throughput(criterion::Throughput::Elements(1));
    g.bench_function("verify", |b| {
        b.iter(|| attest::verify(&keys.vk, &statement, &chunks).expect("verifies"))
    });

    // One chunk of the seniors' statement: general, interval and run
    // circuits.
    for (name, kind, widths) in [
        ("filtered_chunk_general", CircuitKind::General, vec![]),
        ("filtered_chunk_intervals", CircuitKind::Intervals, vec![]),
        (
            "filtered_chunk_intervals_ranged",
            CircuitKind::Intervals,
            vec![8, 32],
        ),
        ("filtered_chunk_runs", CircuitKind::Runs, vec![8, 32]),
    ] {
        let statement = Statement {
            widths,
            ..seniors_statement()
        };
        let capacity = chunk_records(kind, &statement);
        let keys = Keys::setup_for(kind, &statement, capacity, &mut rng);
        let values = patients(capacity);
        g.throughput(criterion::Throughput::Elements(capacity as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                Committed::new(kind, &statement, &values, capacity)
                    .prove(&keys, &statement, &mut rng)
            })
        });
    }
    g.finish();
}

/// `n` generated patients: age below 100 and cost below 2^24.
fn patients(n: usize) -> Vec<u32> {
    common::values(2 * n, 7)
        .chunks(2)
        .flat_map(|p| [p[0] % 100, p[1] >> 8])
        .collect()
}

/// Poseidon of width 3 (rate 2), the naive construction's hash.
fn width3() -> PoseidonConfig<Fr> {
    let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(254, 2, 8, 57, 0);
    PoseidonConfig::new(8, 57, 5, mds, ark, 2, 1)
}

/// The naive construction: per value a 32-bit range check and a hash
/// `acc = H(acc, value)`; public inputs the final `acc` and the sum.
#[derive(Clone)]
struct Naive {
    config: PoseidonConfig<Fr>,
    values: Vec<u32>,
    public: [Fr; 2],
}

impl Naive {
    fn new(config: PoseidonConfig<Fr>, values: Vec<u32>) -> Naive {
        let mut acc = Fr::from(0u64);
        for v in &values {
            let mut sponge = PoseidonSponge::new(&config);
            sponge.absorb(&vec![acc, Fr::from(*v)]);
            acc = sponge.squeeze_field_elements::<Fr>(1)[0];
        }
        let sum: u64 = values.iter().map(|v| u64::from(*v)).sum();
        Naive {
            config,
            values,
            public: [acc, Fr::from(sum)],
        }
    }
}

impl ConstraintSynthesizer<Fr> for Naive {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let acc_out = FpVar::new_input(cs.clone(), || Ok(self.public[0]))?;
        let sum_out = FpVar::new_input(cs.clone(), || Ok(self.public[1]))?;
        let mut acc = FpVar::zero();
        let mut sum = FpVar::zero();
        for v in &self.values {
            let bits: Vec<Boolean<Fr>> = (0..32)
                .map(|b| Boolean::new_witness(cs.clone(), || Ok((v >> b) & 1 == 1)))
                .collect::<Result<_, _>>()?;
            let value = Boolean::le_bits_to_fp(&bits)?;
            let mut sponge = PoseidonSpongeVar::new(cs.clone(), &self.config);
            sponge.absorb(&vec![acc, value.clone()])?;
            acc = sponge.squeeze_field_elements(1)?.remove(0);
            sum += value;
        }
        acc.enforce_equal(&acc_out)?;
        sum.enforce_equal(&sum_out)
    }
}

/// The process's peak resident memory, bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

fn comparison(n: usize, out: &str) {
    let mut rng = StdRng::seed_from_u64(2);
    // The naive construction on n values.
    let naive = Naive::new(width3(), common::values(n, 3));
    let public = naive.public;
    let constraints = {
        let cs = ark_relations::gr1cs::ConstraintSystem::<Fr>::new_ref();
        naive
            .clone()
            .generate_constraints(cs.clone())
            .expect("synthesizes");
        cs.num_constraints()
    };
    let (npk, nvk) =
        Groth16::<Bn254>::circuit_specific_setup(naive.clone(), &mut rng).expect("setup");
    let t = Instant::now();
    let config = naive.config.clone();
    let fresh = Naive::new(config, naive.values.clone());
    let proof = Groth16::<Bn254>::prove(&npk, fresh, &mut rng).expect("proves");
    let naive_s = t.elapsed().as_secs_f64();
    assert!(Groth16::<Bn254>::verify(&nvk, &public, &proof).expect("verifies"));
    eprintln!("naive: {n} records, {constraints} constraints, commit+prove {naive_s:.2} s");

    // The naive proof's peak memory, then the peak reset (Linux: 5 to
    // clear_refs) so the next reading is ours alone.
    let naive_peak = peak_rss();
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();

    // 1,000,000 records, chunk by chunk (memory bounded by one chunk).
    let records = 1_000_000usize;
    let statement = sum_statement();
    let keys = Keys::setup(&statement, CHUNK, &mut rng);
    let all = common::values(records, 5);
    let t = Instant::now();
    let (dataset, chunks) = attest_all(&keys, &all, &mut rng);
    let ours_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (recomputed, totals) = attest::verify(&keys.vk, &statement, &chunks).expect("verifies");
    let verify_s = t.elapsed().as_secs_f64();
    assert_eq!(recomputed, dataset);
    let sum: u64 = all.iter().map(|v| u64::from(*v)).sum();
    assert_eq!(totals, vec![records as u64, records as u64, sum]);
    eprintln!(
        "symbiont: {records} records in {} chunks, commit+prove {ours_s:.1} s, verify all {verify_s:.3} s",
        chunks.len()
    );
    let report = serde_json::json!({
        "naive_records": n,
        "naive_constraints": constraints,
        "naive_s": naive_s,
        "records": records,
        "chunks": chunks.len(),
        "chunk_records": CHUNK,
        "commit_prove_s": ours_s,
        "verify_all_s": verify_s,
        "peak_rss_bytes": peak_rss(),
        "peak_reset": reset,
        "naive_peak_rss_bytes": naive_peak,
    });
    std::fs::write(out, report.to_string()).expect("writable");
}

/// Patients' age and cost: the count of those aged 65 or more and the sum
/// of their cost (`clinic_costs`' attested statement).
fn seniors_statement() -> Statement {
    Statement {
        fields: 2,
        comparisons: vec![Comparison {
            field: 0,
            op: Op::Ge,
            threshold: 65,
        }],
        aggregates: vec![
            Aggregate {
                kind: Kind::Count,
                filters: vec![0],
            },
            Aggregate {
                kind: Kind::Sum(1),
                filters: vec![0],
            },
        ],
        widths: Vec::new(),
    }
}

/// Records per chunk for `kind`'s circuit, as `symbi run --bundle` cuts
/// them: 2,048 for the general circuit, as many as fit 2^17 for the
/// interval and run circuits.
fn chunk_records(kind: CircuitKind, statement: &Statement) -> usize {
    match kind {
        CircuitKind::Intervals => symbiont_circuits::intervals::capacity(statement),
        CircuitKind::Runs => symbiont_circuits::runs::capacity(statement),
        _ => 2048,
    }
}

/// `records` generated patients (age 0..100, cost below 2^24) committed
/// and proved with `kind`'s circuit, in [`chunk_records`]: seconds for the
/// setup, for commit + prove, and for verifying every chunk.
fn filtered(kind: CircuitKind, statement: Statement, records: usize) -> serde_json::Value {
    let mut rng = StdRng::seed_from_u64(3);
    let capacity = chunk_records(kind, &statement);
    let t = Instant::now();
    let keys = Keys::setup_for(kind, &statement, capacity, &mut rng);
    let setup_s = t.elapsed().as_secs_f64();
    let values = patients(records);
    let t = Instant::now();
    let committed = Committed::new(kind, &statement, &values, capacity);
    let chunks = committed.prove(&keys, &statement, &mut rng);
    let prove_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let (_, totals) = attest::verify(&keys.vk, &statement, &chunks).expect("verifies");
    let verify_s = t.elapsed().as_secs_f64();
    assert_eq!(
        totals,
        symbiont_circuits::statement::reference(&statement, &values)
    );
    eprintln!(
        "{kind:?} {:?}: {records} records in chunks of {capacity}, commit+prove {prove_s:.1} s",
        statement.widths
    );
    serde_json::json!({
        "circuit": format!("{kind:?}"),
        "widths": statement.widths,
        "records": records,
        "chunk_records": capacity,
        "setup_s": setup_s,
        "commit_prove_s": prove_s,
        "verify_all_s": verify_s,
        "chunks": chunks.len(),
    })
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(n) = std::env::var("SYMBI_BENCH_FILTERED") {
        // The general circuit (before), the interval circuit with 32-bit
        // ages and with ages declared in 0..=150 (8 bits), and the run
        // circuit (declared ages), one after the other in this run, at
        // `symbi run --bundle`'s chunk sizes.
        let n: usize = n.parse().expect("SYMBI_BENCH_FILTERED is a count");
        let out = std::env::var("SYMBI_BENCH_OUT").unwrap_or_else(|_| "filtered.json".into());
        let ranged = Statement {
            widths: vec![8, 32],
            ..seniors_statement()
        };
        let report = serde_json::json!([
            filtered(CircuitKind::General, seniors_statement(), n),
            filtered(CircuitKind::Intervals, seniors_statement(), n),
            filtered(CircuitKind::Intervals, ranged.clone(), n),
            filtered(CircuitKind::Runs, ranged, n),
        ]);
        std::fs::write(out, report.to_string()).expect("writable");
        return;
    }
    if let Ok(n) = std::env::var("SYMBI_BENCH_ATTEST") {
        let out = std::env::var("SYMBI_BENCH_OUT").unwrap_or_else(|_| "attestation.json".into());
        comparison(n.parse().expect("SYMBI_BENCH_ATTEST is a count"), &out);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
