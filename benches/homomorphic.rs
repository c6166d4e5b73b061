//! The homomorphic lane: an encrypted SUM of 32-bit values.
//!
//! - `additive/sum_100k`: Symbiont's additive path end to end — encrypt
//!   100,000 values under the public key (both cores), add the lists,
//!   reduce, decrypt — checked against the plain sum (criterion).
//! - With `SYMBI_BENCH_NAIVE=N` (run by `benches/homomorphic.sh`): the
//!   naive construction on N values with tfhe's integer API — `FheUint32`
//!   `+` in a loop, and `iter().sum()` — timed once each (minutes), and
//!   the integer API's cost of one encrypted comparison (`FheUint32::ge`
//!   against a constant) and one `max`, and the programmable path's own
//!   cost per record (`programmable_costs`); written as JSON to
//!   `SYMBI_BENCH_OUT`.

mod common;

use std::time::Instant;

use criterion::{Criterion, criterion_group};
use rayon::prelude::*;
use symbiont_crypto::additive::{Column, Encryptor, List, SLOTS, Width, generate};

const VALUES: usize = 100_000;

fn values(n: usize) -> Vec<u32> {
    common::values(n, 0x9e37_79b9_7f4a_7c15)
}

/// Encrypt, add, reduce, decrypt: the additive path's whole work.
fn additive_sum(
    public: &symbiont_crypto::additive::PublicKey,
    secret: &symbiont_crypto::additive::SecretKey,
    values: &[u32],
) -> i128 {
    let lists: Vec<Vec<List>> = values
        .par_chunks(SLOTS)
        .map_init(
            || Encryptor::new(public.clone()),
            |enc, chunk| {
                let v: Vec<i64> = chunk.iter().map(|x| i64::from(*x)).collect();
                enc.encrypt(&v, Width::Sum).expect("in range")
            },
        )
        .collect();
    let mut column = Column::new(Width::Sum);
    for l in &lists {
        column.add(l).expect("within the budget");
    }
    secret.decrypt(&column.reduce()).expect("decrypts")
}

fn bench(c: &mut Criterion) {
    let (secret, public) = generate();
    let v = values(VALUES);
    let want: i128 = v.iter().map(|x| i128::from(*x)).sum();
    let mut g = c.benchmark_group("additive");
    g.sample_size(10);
    g.throughput(criterion::Throughput::Elements(VALUES as u64));
    g.bench_function("sum_100k", |b| {
        b.iter(|| assert_eq!(additive_sum(&public, &secret, &v), want))
    });
    g.finish();
}

fn naive(n: usize, out: &str) {
    use tfhe::prelude::*;
    use tfhe::{ConfigBuilder, FheUint32, generate_keys, set_server_key};
    let (ck, sk) = generate_keys(ConfigBuilder::default().build());
    rayon::broadcast(|_| set_server_key(sk.clone()));
    set_server_key(sk);
    let v = values(n);
    let cts: Vec<FheUint32> = v.iter().map(|x| FheUint32::encrypt(*x, &ck)).collect();
    let want = v.iter().fold(0u32, |a, x| a.wrapping_add(*x));

    let t = Instant::now();
    let mut acc = cts[0].clone();
    for ct in &cts[1..] {
        acc = &acc + ct;
    }
    let plus_loop = t.elapsed().as_secs_f64();
    let got: u32 = acc.decrypt(&ck);
    assert_eq!(got, want);
    eprintln!("naive + loop over {n}: {plus_loop:.1} s");

    let t = Instant::now();
    let sum: FheUint32 = cts.iter().sum();
    let iter_sum = t.elapsed().as_secs_f64();
    let got: u32 = sum.decrypt(&ck);
    assert_eq!(got, want);
    eprintln!("naive iter().sum() over {n}: {iter_sum:.1} s");

    let mut ge = Vec::new();
    let mut max = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        let b = cts[i].ge(1u32 << 31);
        ge.push(t.elapsed().as_secs_f64());
        let got: bool = b.decrypt(&ck);
        assert_eq!(got, v[i] >= 1 << 31);
        let t = Instant::now();
        let m = cts[i].max(&cts[i + 1]);
        max.push(t.elapsed().as_secs_f64());
        let got: u32 = m.decrypt(&ck);
        assert_eq!(got, v[i].max(v[i + 1]));
    }
    ge.sort_by(f64::total_cmp);
    max.sort_by(f64::total_cmp);
    let programmable = programmable_costs(&v[..PROGRAMMABLE_RECORDS]);
    let report = serde_json::json!({
        "programmable": programmable,
        "n": n,
        "plus_loop_s": plus_loop,
        "iter_sum_s": iter_sum,
        "ge_s_median": ge[2],
        "max_s_median": max[2],
        "fhe_uint32_compressed_bytes": bincode::serialize(&cts[0].clone().compress()).map(|b| b.len()).unwrap_or(0),
    });
    std::fs::write(out, report.to_string()).expect("writable");
}

/// Records the programmable path's measurement evaluates.
const PROGRAMMABLE_RECORDS: usize = 16;

/// The programmable path itself (`symbiont_crypto::programmable`, as the
/// compute stage runs it): seconds per record of an encrypted comparison
/// counted (`count(filter(x >= c))`) and of a filtered `max`, over
/// records of three fields; bytes per stored value.
fn programmable_costs(v: &[u32]) -> serde_json::Value {
    use symbiont_crypto::programmable::{
        Aggregate, Comparison, Kind, Op, PublicKey, Spec, decrypt, evaluate, generate,
    };
    let (client, server, public) = generate();
    let key = PublicKey::from_bytes(&public).expect("a key");
    let records: Vec<Vec<u8>> = v
        .iter()
        .map(|x| key.encrypt(&[i64::from(*x), 1, 2]).expect("in range"))
        .collect();
    let threshold = 1i64 << 31;
    let comparison = vec![Comparison {
        slot: 0,
        op: Op::Ge,
        constant: threshold,
    }];
    let run = |kind, slot| {
        let spec = Spec {
            comparisons: comparison.clone(),
            aggregates: vec![Aggregate {
                kind,
                filters: vec![0],
                slot,
            }],
        };
        let t = Instant::now();
        let out = evaluate(&server, &records, &spec).expect("evaluates");
        let s = t.elapsed().as_secs_f64();
        (
            decrypt(&client, &out, &spec, records.len() as u64).expect("decrypts")[0],
            s,
        )
    };
    let kept: Vec<i64> = v
        .iter()
        .map(|x| i64::from(*x))
        .filter(|x| *x >= threshold)
        .collect();
    let ((count, _), count_s) = run(Kind::Count, None);
    assert_eq!(count, kept.len() as i64);
    let ((_, max), max_s) = run(Kind::Max, Some(0));
    assert_eq!(max, Some(kept.iter().copied().max().unwrap_or(i64::MIN)));
    let n = v.len() as f64;
    eprintln!(
        "programmable path over {}: count of x >= c {:.3} s/record, filtered max {:.3} s/record",
        v.len(),
        count_s / n,
        max_s / n
    );
    serde_json::json!({
        "records": v.len(),
        "compare_count_s_per_record": count_s / n,
        "filtered_max_s_per_record": max_s / n,
        "bytes_per_stored_value": records[0].len() as f64 / 3.0,
    })
}

criterion_group!(benches, bench);

fn main() {
    if let Ok(n) = std::env::var("SYMBI_BENCH_NAIVE") {
        let out = std::env::var("SYMBI_BENCH_OUT").unwrap_or_else(|_| "naive.json".into());
        naive(n.parse().expect("SYMBI_BENCH_NAIVE is a count"), &out);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
