//! How fast the front end reads a large program: a generated program of
//! 10,000 lines through the tree-sitter parse alone (the floor), parse to
//! the AST, and parse + type check (the target: under 200 ms).
//!
//! `benches/dsl_parse_check.sh` runs this and prints medians and ratios.

use criterion::{Criterion, criterion_group, criterion_main};
use symbiont_dsl::{check, parse, parse_cst};

/// A valid program of at least `lines` lines: structs, classifiers and
/// aggregating agents, repeated with distinct names.
fn generate_program(lines: usize) -> String {
    let mut source = String::new();
    let mut i = 0;
    while source.lines().count() < lines {
        source.push_str(&format!(
            r#"struct Record{i} {{
    id: string,
    amount: int,
    score: float,
    region: string
}}

@classifier
agent classify{i}(r: Record{i}) -> string {{
    if (r.amount > {i} && r.region == "EU") {{
        return "restricted";
    }}
    if (pii.email(r.id) || pii.ssn(r.id)) {{
        return "confidential";
    }}
    return "public";
}}

// Aggregates over the records of unit {i}.
agent report{i}(rows: Stream<Record{i}>) -> int
    with classifier = "classify{i}" {{
    let big = rows.filter(r => r.amount >= {i} * 2 + 1 && r.score < 0.5);
    let total = sum(big.map(r => r.amount));
    let mean = avg(rows.map(r => r.score));
    return total + count(rows);
}}

"#
        ));
        i += 1;
    }
    source
}

fn bench(c: &mut Criterion) {
    let source = generate_program(10_000);
    let (program, diagnostics) = parse(&source);
    assert!(diagnostics.is_empty(), "the generated program parses");
    assert!(check(&program.unwrap()).is_empty(), "and type-checks");

    let mut group = c.benchmark_group("dsl_10k_lines");
    group.sample_size(20);
    group.bench_function("cst_only", |b| b.iter(|| parse_cst(&source)));
    group.bench_function("parse", |b| b.iter(|| parse(&source)));
    group.bench_function("parse_and_check", |b| {
        b.iter(|| {
            let (program, _) = parse(&source);
            check(&program.expect("valid"))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
