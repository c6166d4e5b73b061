//! Compiled policy decisions per second, one core: the fast path (`allows`)
//! and the explained one (`decide`), for an allowed and a denied action
//! under two policies with conditions. `benches/policy.sh` prints the rates.

use std::collections::BTreeMap;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use symbiont_operators::{Attributes, CompiledPolicies, PolicyValue};

const POLICIES: &str = r#"
policy medical_data_policy {
    allow: ["read", "analyze", "aggregate"];
    deny: ["export", "persist", "share"];
    require: [audit_trail == true];
}
policy data_access {
    allow: ["read", "analyze", "aggregate"]
    conditions: { data_classification: "medical", user_clearance: >= "level_2" }
}
"#;

fn bench(c: &mut Criterion) {
    let program = symbiont_dsl::parse(POLICIES).0.unwrap();
    let defined = symbiont_dsl::policies(&program).unwrap();
    let policies = vec![
        defined["medical_data_policy"].clone(),
        defined["data_access"].clone(),
    ];
    let compiled = CompiledPolicies::compile(&policies).unwrap();
    let principal = BTreeMap::from([
        ("user_clearance".to_owned(), PolicyValue::parse("level_3")),
        ("verified".to_owned(), PolicyValue::Bool(true)),
    ]);
    let resource = BTreeMap::from([("audit_trail".to_owned(), PolicyValue::Bool(true))]);
    let record = BTreeMap::from([("class".to_owned(), PolicyValue::parse("medical"))]);
    let attributes = Attributes {
        principal: &principal,
        resource: &resource,
        asserted: &BTreeMap::new(),
        record: &record,
    };
    assert!(compiled.allows("read", &attributes));
    assert!(!compiled.allows("export", &attributes));
    let mut group = c.benchmark_group("policy");
    group.throughput(Throughput::Elements(1000));
    for action in ["read", "export"] {
        group.bench_function(format!("allows_{action}"), |b| {
            b.iter(|| {
                let mut n = 0;
                for _ in 0..1000 {
                    n += usize::from(compiled.allows(std::hint::black_box(action), &attributes));
                }
                n
            })
        });
        group.bench_function(format!("decide_{action}"), |b| {
            b.iter(|| {
                for _ in 0..1000 {
                    std::hint::black_box(
                        compiled.decide(std::hint::black_box(action), &attributes),
                    );
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
