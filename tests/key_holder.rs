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

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use symbiont_crypto::Keystore;
use symbiont_crypto::additive::{PRIMES, Reduced, SLOTS, Width};
use symbiont_engine::{
    HomomorphicLane, HomomorphicStage, InProcessReduce, JobConfig, JobError, KeystoreHolder,
    LaneKeys, ListFeed, OnError, ReducedColumns, run_batch,
};
use symbiont_operators::{ColumnKey, PackedList, Quantity, Query, Value};

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
    fn start(&self) -> Box<dyn ListFeed> {
        Box::new(HostileFeed {
            honest: InProcessReduce.start(),
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
