//! The plaintext pipeline of `benches/plaintext_1m.symbi` through the
//! library (no process start): 200,000 generated rows, 1 and 2 workers.
//! `benches/plaintext_vs_duckdb.sh` compares the whole command with DuckDB.

use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use symbiont_engine::{JobConfig, OnError, generate_patients, run_batch};

fn bench(c: &mut Criterion) {
    let source = include_str!("plaintext_1m.symbi");
    let program = symbiont_dsl::parse(source)
        .0
        .expect("the bench program parses");
    let query = symbiont_dsl::lower_query(&program, source, None).expect("and lowers");
    let path: PathBuf = std::env::temp_dir().join("symbiont-bench-patients-200k.csv");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    generate_patients(200_000, 42, &mut file).unwrap();
    drop(file);

    let mut group = c.benchmark_group("engine_plaintext_200k");
    group.sample_size(10);
    for workers in [1, 2] {
        let config = JobConfig {
            input: path.clone(),
            workers,
            on_error: OnError::Fail,
            progress: None,
            keys: Default::default(),
            persist: None,
            forbidden_lanes: [false; 3],
            sealed_stage: None,
            homomorphic: None,
            persist_tfhe: None,
            programmable: None,
            commit: None,
            carried: Vec::new(),
        };
        group.bench_function(format!("{workers}_workers"), |b| {
            b.iter(|| run_batch(&query, &config).unwrap())
        });
    }
    group.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(benches, bench);
criterion_main!(benches);
