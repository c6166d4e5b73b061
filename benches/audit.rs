//! Audit log throughput on one core: appends with the batched signing the
//! log uses (a signed checkpoint every 1024 entries, each fsynced), appends
//! with an Ed25519 signature per entry (the alternative, for comparison),
//! and offline verification. `benches/audit.sh` prints entries per second.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use symbiont_crypto::{AuditLog, AuditSigningKey, EntryKind, verify};

const ENTRIES: u64 = 10_000;

fn detail(i: u64) -> serde_json::Value {
    serde_json::json!({"job": 7, "stage": i % 13, "op": "aggregate", "lane": "plaintext",
        "read_sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"})
}

fn fresh(dir: &std::path::Path, n: &mut u64) -> std::path::PathBuf {
    *n += 1;
    let path = dir.join(format!("bench-{n}.log"));
    let _ = std::fs::remove_file(&path);
    path
}

fn bench(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("symbiont-audit-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut n = 0;
    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.throughput(Throughput::Elements(ENTRIES));

    group.bench_function("append_batched_signing", |b| {
        b.iter_batched(
            || fresh(&dir, &mut n),
            |path| {
                let key = AuditSigningKey::generate("bench").unwrap();
                let (mut log, _) = AuditLog::open(&path, key, 1024).unwrap();
                for i in 0..ENTRIES {
                    log.append(EntryKind::StageEnd, detail(i)).unwrap();
                }
                log.checkpoint().unwrap();
            },
            BatchSize::PerIteration,
        )
    });

    // What signing every entry would cost: the same appends, plus one
    // Ed25519 signature per entry.
    let signer = AuditSigningKey::generate("bench").unwrap();
    group.bench_function("append_signing_each_entry", |b| {
        b.iter_batched(
            || fresh(&dir, &mut n),
            |path| {
                let key = AuditSigningKey::generate("bench").unwrap();
                let (mut log, _) = AuditLog::open(&path, key, 1024).unwrap();
                for i in 0..ENTRIES {
                    let d = detail(i);
                    let note = signer.sign_note(&format!("{d}\n"));
                    log.append(
                        EntryKind::StageEnd,
                        serde_json::json!({"d": d, "sig": note.len()}),
                    )
                    .unwrap();
                }
                log.checkpoint().unwrap();
            },
            BatchSize::PerIteration,
        )
    });

    let path = fresh(&dir, &mut n);
    let key = AuditSigningKey::generate("bench").unwrap();
    let public = key.verifying_key();
    let (mut log, _) = AuditLog::open(&path, key, 1024).unwrap();
    for i in 0..ENTRIES {
        log.append(EntryKind::StageEnd, detail(i)).unwrap();
    }
    log.checkpoint().unwrap();
    drop(log);
    group.bench_function("verify", |b| b.iter(|| verify(&path, &public).unwrap()));
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench);
criterion_main!(benches);
