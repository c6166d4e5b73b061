//! Oracle tests: for random schemas, datasets, filters, classifiers and
//! group keys, every aggregate `symbi run` computes equals a naive
//! recomputation in plain Rust.

use std::collections::BTreeMap;

use proptest::prelude::*;
use symbiont_crypto::Keystore;
use symbiont_engine::{JobConfig, LaneKeys, OnError, run_batch};

/// One keystore for every case: the confidential and restricted lanes'
/// records are sealed and opened for real.
fn keystore() -> std::sync::Arc<Keystore> {
    static KS: std::sync::OnceLock<std::sync::Arc<Keystore>> = std::sync::OnceLock::new();
    std::sync::Arc::clone(KS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("symbiont-oracle-ks-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Keystore::init(&dir, None).unwrap();
        std::sync::Arc::new(Keystore::open(&dir, None).unwrap())
    }))
}

#[derive(Clone, Debug)]
struct Case {
    /// Number of int fields `f0..`.
    ints: usize,
    /// Rows: the int fields, then the key.
    rows: Vec<(Vec<i64>, String)>,
    filter_field: usize,
    filter_op: &'static str,
    threshold: i64,
    sum_field: usize,
    group: bool,
    classify_field: usize,
    workers: usize,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..4).prop_flat_map(|ints| {
        (
            Just(ints),
            prop::collection::vec(
                (
                    prop::collection::vec(-1000i64..1000, ints),
                    prop::sample::select(vec!["a", "b", "c", "d"]),
                )
                    .prop_map(|(v, k)| (v, k.to_owned())),
                0..200,
            ),
            0..ints,
            prop::sample::select(vec![">=", "<", "==", "!="]),
            -1000i64..1000,
            0..ints,
            any::<bool>(),
            0..ints,
            1usize..4,
        )
            .prop_map(
                |(
                    ints,
                    rows,
                    filter_field,
                    filter_op,
                    threshold,
                    sum_field,
                    group,
                    classify_field,
                    workers,
                )| Case {
                    ints,
                    rows,
                    filter_field,
                    filter_op,
                    threshold,
                    sum_field,
                    group,
                    classify_field,
                    workers,
                },
            )
    })
}

fn holds(op: &str, a: i64, b: i64) -> bool {
    match op {
        ">=" => a >= b,
        "<" => a < b,
        "==" => a == b,
        _ => a != b,
    }
}

/// The program of a case; `extremes` adds `min` and `max` (which the
/// homomorphic lane's additive path does not compute).
fn program(c: &Case, extremes: bool) -> String {
    let fields: Vec<String> = (0..c.ints).map(|i| format!("f{i}: int")).collect();
    let filter = format!("r.f{} {} {}", c.filter_field, c.filter_op, c.threshold);
    let body = |src: &str| {
        let (lo, hi) = if extremes {
            (
                format!(
                    "min({src}.filter(r => {filter}).map(r => r.f{}))",
                    c.sum_field
                ),
                format!(
                    "max({src}.filter(r => {filter}).map(r => r.f{}))",
                    c.sum_field
                ),
            )
        } else {
            ("0".to_owned(), "0".to_owned())
        };
        format!(
            "S {{ n: count({src}.filter(r => {filter})), total: sum({src}.filter(r => {filter}).map(r => r.f{s})), lo: {lo}, hi: {hi}, mean: avg({src}.filter(r => {filter}).map(r => r.f{s})), all: count({src}) }}",
            s = c.sum_field
        )
    };
    let (ret, value) = if c.group {
        (
            "Array<S>".to_owned(),
            format!("rows.group_by(r => r.k).map(g => {})", body("g.values")),
        )
    } else {
        ("S".to_owned(), body("rows"))
    };
    format!(
        "struct R {{ {}, k: string }}\n\
         struct S {{ n: int, total: int, lo: int, hi: int, mean: float, all: int }}\n\
         @classifier\nagent lanes(r: R) -> string {{\n\
             if (r.f{cf} > 300) {{ return \"restricted\"; }}\n\
             if (r.f{cf} < -300) {{ return \"confidential\"; }}\n\
             return \"public\";\n}}\n\
         agent q(rows: Stream<R>) -> {ret} with classifier = \"lanes\" {{\n    return {value};\n}}\n",
        fields.join(", "),
        cf = c.classify_field,
    )
}

/// The expected result, computed naively (`lo` and `hi` are 0 without
/// `extremes`).
fn naive(c: &Case, extremes: bool) -> (serde_json::Value, [u64; 3]) {
    let mut groups: BTreeMap<String, Vec<&(Vec<i64>, String)>> = BTreeMap::new();
    for row in &c.rows {
        let key = if c.group {
            row.1.clone()
        } else {
            String::new()
        };
        groups.entry(key).or_default().push(row);
    }
    let summary = |rows: &[&(Vec<i64>, String)]| {
        let kept: Vec<i64> = rows
            .iter()
            .filter(|r| holds(c.filter_op, r.0[c.filter_field], c.threshold))
            .map(|r| r.0[c.sum_field])
            .collect();
        serde_json::json!({
            "n": kept.len(),
            "total": kept.iter().sum::<i64>(),
            "lo": if extremes { kept.iter().min().copied() } else { Some(0) },
            "hi": if extremes { kept.iter().max().copied() } else { Some(0) },
            "mean": if kept.is_empty() { None } else { Some(kept.iter().sum::<i64>() as f64 / kept.len() as f64) },
            "all": rows.len(),
        })
    };
    let value = if c.group {
        serde_json::Value::Array(groups.values().map(|rows| summary(rows)).collect())
    } else {
        summary(&c.rows.iter().collect::<Vec<_>>())
    };
    let mut lanes = [0u64; 3];
    for row in &c.rows {
        let v = row.0[c.classify_field];
        lanes[if v > 300 {
            2
        } else if v < -300 {
            1
        } else {
            0
        }] += 1;
    }
    (value, lanes)
}

/// The case's rows as a CSV file in a directory named `dir` (and this
/// process).
fn write_rows(c: &Case, dir: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rows.csv");
    let mut csv: String = (0..c.ints).map(|i| format!("f{i},")).collect::<String>() + "k\n";
    for (values, key) in &c.rows {
        for v in values {
            csv.push_str(&format!("{v},"));
        }
        csv.push_str(key);
        csv.push('\n');
    }
    std::fs::write(&path, csv).unwrap();
    path
}

fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
        }
        (serde_json::Value::Array(x), serde_json::Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| close(v, w))
        }
        (serde_json::Value::Number(x), serde_json::Value::Number(y)) => {
            let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
            (x - y).abs() <= 1e-9 * x.abs().max(1.0)
        }
        _ => a == b,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_equal_a_naive_recomputation(c in case()) {
        let source = program(&c, true);
        let (program, diagnostics) = symbiont_dsl::parse(&source);
        prop_assert!(diagnostics.is_empty(), "{diagnostics:?}\n{source}");
        let program = program.unwrap();
        prop_assert_eq!(symbiont_dsl::check(&program), vec![], "{}", source);
        let query = symbiont_dsl::lower_query(&program, &source, None).unwrap();

        let path = write_rows(&c, "symbi-oracle");
        let keys = LaneKeys::for_dataset(keystore(), "oracle", &query.schema).unwrap();
        let out = run_batch(&query, &JobConfig { input: path, workers: c.workers, on_error: OnError::Fail, progress: None, keys, persist: None, forbidden_lanes: [false; 3], sealed_stage: None, homomorphic: None, persist_tfhe: None, programmable: None, commit: None, carried: Vec::new() }).unwrap();
        let (expected, lanes) = naive(&c, true);
        prop_assert!(close(&out.value, &expected), "got {}\nexpected {}\n{}", out.value, expected, source);
        prop_assert_eq!(out.lanes, lanes);
        prop_assert_eq!(out.rows, c.rows.len() as u64);
        // In this process, a job that opened sealed batches locked their
        // buffer into RAM.
        if out.lanes[1] + out.lanes[2] > 0 {
            prop_assert_eq!(out.memory_lock, Some(symbiont_crypto::LockStatus::Locked));
        }
    }
}

/// The key holder of these tests: the keystore's secret key.
fn homomorphic() -> symbiont_engine::HomomorphicLane {
    let ks = keystore();
    symbiont_engine::HomomorphicLane {
        sink: std::sync::Arc::new(symbiont_operators::PackSink::new(
            ks.additive_public_key().unwrap(),
        )),
        stage: std::sync::Arc::new(symbiont_engine::InProcessReduce),
        key_holder: std::sync::Arc::new(symbiont_engine::KeystoreHolder {
            dir: ks.dir().to_owned(),
        }),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The restricted records take the homomorphic lane's additive path
    /// (packed, encrypted, reduced under encryption, decrypted once per
    /// column): every aggregate still equals the naive one.
    #[test]
    fn homomorphic_aggregates_equal_a_naive_recomputation(c in case()) {
        let source = program(&c, false);
        let (program, diagnostics) = symbiont_dsl::parse(&source);
        prop_assert!(diagnostics.is_empty(), "{diagnostics:?}\n{source}");
        let program = program.unwrap();
        let query = symbiont_dsl::lower_query(&program, &source, None).unwrap();
        let path = write_rows(&c, "symbi-oracle-he");
        let keys = LaneKeys::for_dataset(keystore(), "oracle", &query.schema).unwrap();
        let lane = homomorphic();
        let sink = std::sync::Arc::clone(&lane.sink);
        let out = run_batch(&query, &JobConfig { input: path, workers: c.workers, on_error: OnError::Fail, progress: None, keys, persist: None, forbidden_lanes: [false; 3], sealed_stage: None, homomorphic: Some(lane), persist_tfhe: None, programmable: None, commit: None, carried: Vec::new() }).unwrap();
        let (expected, lanes) = naive(&c, false);
        prop_assert!(close(&out.value, &expected), "got {}\nexpected {}\n{}", out.value, expected, source);
        prop_assert_eq!(out.lanes, lanes);
        // Every list was handed to the compute stage.
        prop_assert!(sink.take().is_empty());
    }
}

/// Cases for the programmable path: a few rows (every restricted one costs
/// encrypted comparisons and selections), no grouping, the comparisons it
/// evaluates.
fn small_case() -> impl Strategy<Value = Case> {
    (
        case(),
        prop::sample::select(vec![">=", "<", "=="]),
        1usize..7,
    )
        .prop_map(|(mut c, op, rows)| {
            c.rows.truncate(rows);
            c.group = false;
            c.filter_op = op;
            c
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// A dataset persisted with its restricted records as TFHE integer
    /// ciphertexts, read back on the programmable path (filters, count,
    /// sum, avg, min and max under encryption, in this process): every
    /// aggregate equals the naive one.
    #[test]
    fn programmable_aggregates_equal_a_naive_recomputation(c in small_case()) {
        let parse = |source: &str| {
            let (program, diagnostics) = symbiont_dsl::parse(source);
            assert!(diagnostics.is_empty(), "{diagnostics:?}\n{source}");
            symbiont_dsl::lower_query(&program.unwrap(), source, None).unwrap()
        };
        // Persisting runs the program the additive path computes.
        let persist_query = parse(&program(&c, false));
        let path = write_rows(&c, "symbi-oracle-tfhe");
        let store = path.with_file_name("store");
        let _ = std::fs::remove_dir_all(&store);
        let ks = keystore();
        let (public, _) = ks.programmable_public_key().unwrap();
        let keys = LaneKeys::for_dataset(keystore(), "oracle-tfhe", &persist_query.schema).unwrap();
        run_batch(&persist_query, &JobConfig { input: path, workers: c.workers, on_error: OnError::Fail, progress: None, keys: keys.clone(), persist: Some(store.clone()), forbidden_lanes: [false; 3], sealed_stage: None, homomorphic: Some(homomorphic()), persist_tfhe: Some(std::sync::Arc::new(public)), programmable: None, commit: None, carried: Vec::new() }).unwrap();

        let source = program(&c, true);
        let query = parse(&source);
        // Each case is a job that spends the programmable key's decryption
        // budget; the owner resets it, as a rotation would (the budget
        // itself is tests/key_holder.rs').
        let _ = std::fs::remove_file(ks.dir().join(symbiont_crypto::PROGRAMMABLE_SPENT_FILE));
        let lane = symbiont_engine::ProgrammableLane {
            compiled: symbiont_operators::compile(&query).unwrap(),
            stage: std::sync::Arc::new(symbiont_engine::InProcessEvaluate { dir: ks.dir().to_owned() }),
            key_holder: std::sync::Arc::new(symbiont_engine::KeystoreHolder { dir: ks.dir().to_owned() }),
        };
        let out = run_batch(&query, &JobConfig { input: store, workers: c.workers, on_error: OnError::Fail, progress: None, keys, persist: None, forbidden_lanes: [false; 3], sealed_stage: None, homomorphic: None, persist_tfhe: None, programmable: Some(lane), commit: None, carried: Vec::new() }).unwrap();
        let (expected, lanes) = naive(&c, true);
        prop_assert!(close(&out.value, &expected), "got {}\nexpected {}\n{}", out.value, expected, source);
        prop_assert_eq!(out.lanes, lanes);
        prop_assert_eq!(out.input, symbiont_operators::InputKind::StoreTfhe);
    }
}
