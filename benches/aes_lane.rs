//! The AES-256-GCM lane's cost per byte, single thread, for both
//! implementations behind `symbiont_crypto::Aes256GcmKey`:
//!
//! - `aead_16k/<backend>`: seal then open one 16 KiB message (the size of
//!   `openssl speed -bytes 16384`, which `benches/aes_lane.sh` runs beside).
//! - `batch_1024/<backend>`: what the lane does per batch: encode 1,024
//!   patient records, seal them, open them into a locked buffer, decode.
//!
//! Throughput counts every byte through AES-GCM: sealed plus opened (twice
//! the message), comparable with openssl's encrypt and decrypt rates.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use symbiont_crypto::{
    Backend, DataKey, KeyId, LockedBuf, NonceSource, Opener, SealContext, Sealer,
};
use symbiont_operators::{Lane, LaneOpener, Plain, Record, Value, encoded_len, seal_records};

/// Hands out nonces from memory (the keystore's durable reservations are
/// not what is measured here: one per 4,096 batches).
struct Counter(Arc<DataKey>, Mutex<u64>);

impl NonceSource for Counter {
    fn reserve(&self, _: &str) -> Result<(Arc<DataKey>, Range<u64>), String> {
        let mut n = self.1.lock().unwrap();
        *n += 1 << 20;
        Ok((Arc::clone(&self.0), *n - (1 << 20)..*n))
    }
}

fn records() -> Vec<Record> {
    (0..1024u64)
        .map(|i| Record {
            line: i + 2,
            values: vec![
                Value::Str(format!("P{i:07}")),
                Value::Str("Maya Silva".into()),
                Value::Str(format!("123-45-{:04}", i % 10_000)),
                Value::Str(format!("maya.silva{i}@example.org")),
                Value::Int(20 + (i % 70) as i64),
                Value::Str("F".into()),
                Value::Str("58810".into()),
                Value::Str("hypertension".into()),
                Value::Int(527_712 + i as i64),
                Value::Int((i % 40) as i64),
            ],
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let fields = [
        "patient_id",
        "name",
        "ssn",
        "email",
        "age",
        "sex",
        "zip",
        "diagnosis",
        "cost_cents",
        "visits",
    ];
    let context = SealContext::new("bench", &fields);
    let batch = records();
    let batch_bytes = encoded_len(&batch) as u64;

    let mut group = c.benchmark_group("aead_16k");
    group.throughput(Throughput::Bytes(2 * 16 * 1024));
    for backend in Backend::ALL {
        let key = backend.key(&[7; 32]);
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0u64;
        group.bench_function(backend.name(), |b| {
            b.iter(|| {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&n.to_be_bytes());
                let tag = key.seal(&nonce, b"aad", &mut buf);
                key.open(&nonce, b"aad", &mut buf, &tag).unwrap();
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("batch_1024");
    group.throughput(Throughput::Bytes(2 * batch_bytes));
    for backend in Backend::ALL {
        let key = Arc::new(DataKey::new(KeyId([1; 16]), &[7; 32], backend));
        let sealer = Sealer::new(
            context.clone(),
            Arc::new(Counter(Arc::clone(&key), Mutex::new(0))),
        );
        let opener = LaneOpener::new(Opener::new(context.clone(), vec![key]));
        let mut buf = LockedBuf::new();
        group.bench_function(backend.name(), |b| {
            // The records come from the source in the pipeline: cloning
            // them is setup, not measured.
            b.iter_batched(
                || Plain(batch.clone()),
                |records| {
                    let sealed = seal_records(&sealer, Lane::AesGcm, records).unwrap();
                    let plain = opener.open(&sealed, fields.len(), &mut buf).unwrap();
                    assert_eq!(plain.0.len(), 1024);
                    plain
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
