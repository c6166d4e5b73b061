//! The key holder decrypts only what the job sent to the compute stage.
//!
//! The compute stage of the homomorphic lane holds no key: it adds the
//! encrypted lists the job's packers made and returns one reduced
//! ciphertext per column and residue, which the key holder decrypts. A
//! hostile stage (a compromised worker) chooses what it returns. Before
//! this test the key holder decrypted anything: a stage that returned
//! invented columns whose ciphertexts had a mask with one non-zero
//! coordinate read one bit of the secret key per column in the published
//! totals (`probes_of_the_secret_key_are_refused` shows the bits matching
//! the key on that code). Now every returned column must be one the job
//! sent, with the number of lists it sent and the mask that the sum of
//! those lists' masks reduces to; anything else is refused before the key
//! is read.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use symbiont_crypto::Keystore;
use symbiont_crypto::additive::{PRIMES, Reduced, SLOTS, Width};
use symbiont_crypto::programmable::{Encrypted, Spec};
use symbiont_engine::{
    HomomorphicLane, HomomorphicStage, InProcessEvaluate, InProcessReduce, JobConfig, JobError,
    KeystoreHolder, LaneKeys, ListFeed, OnError, ProgrammableLane, ProgrammableStage,
    ReducedColumns, run_batch,
};
use symbiont_operators::{ColumnKey, PackedList, Quantity, Query, Value};
use tfhe::prelude::FheTrivialEncrypt;

/// Every record restricted, counted per diagnosis: a column per group.
const PROGRAM: &str = r#"
struct Patient {
    patient_id: string, name: string, ssn: string, email: string, age: int,
    sex: string, zip: string, diagnosis: string, cost_cents: int, visits: int
}

struct G { d: string, n: int }

@classifier
agent triage(p: Patient) -> string {
    return "restricted";
}

agent per_diagnosis(patients: Stream<Patient>) -> Array<G>
    with classifier = "triage" {
    return patients.group_by(p => p.diagnosis).map(g => G { d: g.key, n: count(g.values) });
}
"#;

fn query() -> Query {
    let (program, diagnostics) = symbiont_dsl::parse(PROGRAM);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    symbiont_dsl::lower_query(&program.unwrap(), PROGRAM, None).unwrap()
}

fn patients() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/data/patients.csv")
}

fn keystore(name: &str) -> Arc<Keystore> {
    let dir = std::env::temp_dir().join(format!("symbi-kh-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    Keystore::init(&dir, None).unwrap();
    Arc::new(Keystore::open(&dir, None).unwrap())
}

/// What a hostile compute stage does to the honest reduction's answer.
type Attack = fn(&mut Vec<(ColumnKey, Reduced)>);

/// The honest in-process reduction, whose answer `attack` rewrites.
#[derive(Debug)]
struct Hostile(Attack);

struct HostileFeed {
    honest: Box<dyn ListFeed>,
    attack: Attack,
    sent: Mutex<u64>,
}

impl HomomorphicStage for Hostile {
    fn start(&self, epoch: u64) -> Box<dyn ListFeed> {
        Box::new(HostileFeed {
            honest: InProcessReduce.start(epoch),
            attack: self.0,
            sent: Mutex::new(0),
        })
    }
}

impl ListFeed for HostileFeed {
    fn send(&self, lists: Vec<PackedList>) {
        *self.sent.lock().unwrap() += lists.len() as u64;
        self.honest.send(lists);
    }

    fn finish(&self) -> Result<ReducedColumns, String> {
        assert!(*self.sent.lock().unwrap() > 0, "the job sent no list");
        let (mut reduced, report) = self.honest.finish()?;
        (self.attack)(&mut reduced);
        Ok((reduced, report))
    }
}

/// `floor(2^64 / p)`: how residues modulo `p` are scaled.
fn delta(p: u64) -> u64 {
    ((1u128 << 64) / u128::from(p)) as u64
}

/// Runs the job with a compute stage that applies `attack`.
fn run(name: &str, attack: Attack) -> (Arc<Keystore>, Result<serde_json::Value, JobError>) {
    let ks = keystore(name);
    let query = query();
    let keys = LaneKeys::for_dataset(Arc::clone(&ks), "patients", &query.schema).unwrap();
    let lane = HomomorphicLane {
        sink: Arc::new(symbiont_operators::PackSink::new(
            ks.additive_public_key().unwrap(),
        )),
        stage: Arc::new(Hostile(attack)),
        key_holder: Arc::new(KeystoreHolder {
            dir: ks.dir().to_owned(),
        }),
    };
    let config = JobConfig {
        input: patients(),
        workers: 2,
        on_error: OnError::Fail,
        progress: None,
        keys,
        persist: None,
        forbidden_lanes: [false; 3],
        sealed_stage: None,
        homomorphic: Some(lane),
        persist_tfhe: None,
        programmable: None,
        commit: None,
        carried: Vec::new(),
    };
    let out = run_batch(&query, &config).map(|o| o.value);
    (ks, out)
}

fn refused(result: Result<serde_json::Value, JobError>, why: &str) {
    match result {
        Err(JobError::Homomorphic(e)) => assert!(e.contains(why), "{e}"),
        other => panic!("expected the key holder to refuse ({why}), got {other:?}"),
    }
}

#[test]
fn an_honest_stage_gives_the_counts() {
    let (_, out) = run("honest", |_| {});
    let rows = out.unwrap();
    let total: i64 = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .sum();
    assert_eq!(total, 2000);
}

/// A probe of key bit `k`: per residue a ciphertext whose mask is
/// delta(p) at coordinate `k` and whose body is 0. Its phase is
/// -delta(p)·s_k, so it decrypts to -s_k.
fn probe(k: usize) -> Vec<Vec<u64>> {
    PRIMES[..Width::Count.residues()]
        .iter()
        .map(|p| {
            let mut ct = vec![0u64; SLOTS + 1];
            ct[k] = delta(*p);
            ct
        })
        .collect()
}

#[test]
fn probes_of_the_secret_key_are_refused() {
    // Every group's count replaced by a probe of one key bit: the bit, in
    // the published count of the group.
    let (ks, out) = run("probe", |reduced| {
        for (k, (_, r)) in reduced.iter_mut().enumerate() {
            r.residues = probe(k);
        }
    });
    if let Ok(rows) = &out {
        // The old key holder: say what leaked. The key file is tfhe's LWE
        // secret key in bincode: a u64 length, then one u64 (0 or 1) per
        // coordinate.
        let key = Keystore::additive_secret_key(ks.dir()).unwrap().to_bytes();
        let rows = rows.as_array().unwrap();
        let read: Vec<i64> = rows.iter().map(|r| -r["n"].as_i64().unwrap()).collect();
        let bits: Vec<i64> = (0..rows.len())
            .map(|k| u64::from_le_bytes(key[8 + 8 * k..16 + 8 * k].try_into().unwrap()) as i64)
            .collect();
        panic!(
            "the key holder decrypted the probes: the published counts give {read:?}, the secret key's first bits are {bits:?}"
        );
    }
    refused(out, "not the sum of the lists the job sent");
}

#[test]
fn an_invented_column_is_refused() {
    // A column the job never sent, probing bit 0: decrypted before this
    // test even though the result then ignored it.
    let (_, out) = run("invented", |reduced| {
        let agg = reduced[0].0.0;
        reduced.push((
            (agg, Value::Str("probe".into()), Quantity::Count),
            Reduced {
                width: Width::Count,
                lists: 1,
                residues: probe(0),
            },
        ));
    });
    refused(out, "a column the job never sent");
}

#[test]
fn a_sent_column_with_another_mask_is_refused() {
    // The honest column's ciphertext with one mask coordinate moved: the
    // body still decrypts to something, but not under the mask sent.
    let (_, out) = run("mask", |reduced| reduced[0].1.residues[0][7] ^= 1 << 40);
    refused(out, "not the sum of the lists the job sent");
}

#[test]
fn a_shifted_body_is_refused_after_decryption() {
    // Bodies carry the data and cannot be checked before decryption. One
    // residue's body moved by one unit (a stage publishing a count of its
    // choosing, or reading a bit of the noise from whether it passes):
    // the residues disagree, and the total they recombine to is beyond
    // anything the lists sent can add up to.
    let (_, out) = run("body", |reduced| {
        let body = &mut reduced[0].1.residues[0][SLOTS];
        *body = body.wrapping_add(delta(PRIMES[0]));
    });
    refused(out, "no sum of the lists sent can reach");
}

#[test]
fn a_dropped_column_or_a_changed_list_count_is_refused() {
    let (_, out) = run("drop", |reduced| {
        reduced.pop();
    });
    refused(out, "was not returned");
    let (_, out) = run("lists", |reduced| reduced[0].1.lists += 1);
    refused(out, "lists");
    let (_, out) = run("twice", |reduced| {
        let again = reduced[0].clone();
        reduced.push(again);
    });
    refused(out, "twice");
}

// The programmable path: the compute stage holds the server key and can
// make ciphertexts of its own (trivial encryptions, or ones with a chosen
// mask); nothing tells them from honest ones. The key holder decrypts an
// answer of the plan's shape only, publishes only values the records can
// give, and charges each job's worst case against the key's budget (the
// budget and rotation are tests/homomorphic.rs').

/// What a hostile programmable stage does to the honest answer.
type Forge = fn(&Path, &mut Vec<Encrypted>);

#[derive(Debug)]
struct HostileEvaluate {
    dir: PathBuf,
    forge: Forge,
}

impl ProgrammableStage for HostileEvaluate {
    fn evaluate(
        &self,
        spec: &Spec,
        records: Vec<Vec<u8>>,
    ) -> Result<(Vec<Encrypted>, Option<serde_json::Value>), String> {
        let honest = InProcessEvaluate {
            dir: self.dir.clone(),
        };
        let (mut answer, report) = honest.evaluate(spec, records)?;
        (self.forge)(&self.dir, &mut answer);
        Ok((answer, report))
    }
}

/// Four records, all restricted, persisted with their TFHE copy; then the
/// sum of their costs on the programmable path, with `forge` applied.
fn run_programmable(name: &str, forge: Forge) -> Result<serde_json::Value, JobError> {
    let ks = keystore(name);
    let text = PROGRAM.replace("-> Array<G>", "-> int").replace(
        "return patients.group_by(p => p.diagnosis).map(g => G { d: g.key, n: count(g.values) });",
        "return sum(patients.map(p => p.cost_cents));",
    );
    let (program, diagnostics) = symbiont_dsl::parse(&text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let query = symbiont_dsl::lower_query(&program.unwrap(), &text, None).unwrap();
    let sample = std::fs::read_to_string(patients()).unwrap();
    let input = ks.dir().with_extension("csv");
    std::fs::write(
        &input,
        sample.lines().take(5).collect::<Vec<_>>().join("\n") + "\n",
    )
    .unwrap();
    let store = ks.dir().with_extension("store");
    let _ = std::fs::remove_dir_all(&store);
    let keys = LaneKeys::for_dataset(Arc::clone(&ks), "four", &query.schema).unwrap();
    let (public, _) = ks.programmable_public_key().unwrap();
    let base = JobConfig {
        input,
        workers: 1,
        on_error: OnError::Fail,
        progress: None,
        keys,
        persist: Some(store.clone()),
        forbidden_lanes: [false; 3],
        sealed_stage: None,
        homomorphic: Some(HomomorphicLane {
            sink: Arc::new(symbiont_operators::PackSink::new(
                ks.additive_public_key().unwrap(),
            )),
            stage: Arc::new(InProcessReduce),
            key_holder: Arc::new(KeystoreHolder {
                dir: ks.dir().to_owned(),
            }),
        }),
        persist_tfhe: Some(Arc::new(public)),
        programmable: None,
        commit: None,
        carried: Vec::new(),
    };
    run_batch(&query, &base).unwrap();
    let config = JobConfig {
        input: store,
        persist: None,
        homomorphic: None,
        persist_tfhe: None,
        programmable: Some(ProgrammableLane {
            compiled: symbiont_operators::compile(&query).unwrap(),
            stage: Arc::new(HostileEvaluate {
                dir: ks.dir().to_owned(),
                forge,
            }),
            key_holder: Arc::new(KeystoreHolder {
                dir: ks.dir().to_owned(),
            }),
        }),
        ..base
    };
    run_batch(&query, &config).map(|o| o.value)
}

#[test]
fn the_programmable_key_holder_decrypts_only_the_plans_answer() {
    assert_eq!(
        run_programmable("prog-honest", |_, _| {}).unwrap(),
        serde_json::json!(sum_of_first_four_costs())
    );
    // One answer more than the plan has aggregates.
    let out = run_programmable("prog-extra", |_, answer| {
        let again = answer[0].clone();
        answer.push(again);
    });
    refused(out, "2 answers for 1 aggregates");
    // A sum no four costs below 2^43 reach: a trivial encryption of 2^62
    // made with the server key alone (published as the total before).
    let out = run_programmable("prog-forged", |dir, answer| {
        let server = Keystore::programmable_server_key(dir).unwrap();
        let server: tfhe::CompressedServerKey =
            tfhe::safe_serialization::safe_deserialize(&server[..], 1 << 30).unwrap();
        tfhe::set_server_key(server.decompress());
        let forged = tfhe::FheInt64::encrypt_trivial(1i64 << 62);
        let mut bytes = Vec::new();
        tfhe::safe_serialization::safe_serialize(&forged, &mut bytes, 1 << 30).unwrap();
        answer[0].value = Some(bytes);
    });
    refused(out, "decrypts outside what 4 records can give");
}

/// The sum of `cost_cents` over the sample's first four records.
fn sum_of_first_four_costs() -> i64 {
    let sample = std::fs::read_to_string(patients()).unwrap();
    let mut lines = sample.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = header.iter().position(|h| *h == "cost_cents").unwrap();
    lines
        .take(4)
        .map(|l| l.split(',').nth(at).unwrap().parse::<i64>().unwrap())
        .sum()
}
