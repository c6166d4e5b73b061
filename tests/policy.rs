//! The policy engine: a table of decisions with their reasons, properties
//! of deny-overrides and default-deny, and enforcement by `symbi check`,
//! `symbi run` and `symbi policy eval`.

use std::collections::BTreeMap;
use std::process::{Command, Output};

use proptest::prelude::*;
use symbiont_operators::{Attributes, CompiledPolicies, Effect, Policy, PolicyValue};

const POLICIES: &str = r#"
policy medical {
    allow: ["read", "analyze", "aggregate"];
    deny: ["export", "persist", "share"];
    require: [audit_trail == true];
}
policy clearance {
    allow: ["read", "analyze", "aggregate", "export"]
    conditions: {
        data_classification: "medical",
        user_clearance: >= "level_2",
        retention_days: <= 30
    }
}
policy open_data {
    allow: ["read", "analyze", "aggregate", "export", "share"];
}
policy contradictory {
    allow: ["read", "export"];
    deny: ["export"];
}
policy encrypted_only {
    allow: ["read", "aggregate"];
    require: [encryption = "homomorphic", region != "US"];
}
policy empty {
}
policy strict extends medical {
    allow: ["read", "analyze", "aggregate", "export"];
    deny: ["analyze"];
}
policy retention {
    allow: ["persist"];
    conditions: { retention_period: <= 30.days, geographic_restriction: "EU" }
}
policy namespaced {
    allow: ["read"];
    require: [principal.verified == true];
    conditions: { principal.clearance: >= "level_2", resource.region: "EU", record.class: "public" }
}
"#;

fn defined() -> BTreeMap<String, Policy> {
    let program = symbiont_dsl::parse(POLICIES).0.expect("the policies parse");
    symbiont_dsl::policies(&program)
        .unwrap()
        .into_iter()
        .collect()
}

fn attrs(pairs: &str) -> BTreeMap<String, PolicyValue> {
    pairs
        .split_whitespace()
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap();
            (k.to_owned(), PolicyValue::parse(v))
        })
        .collect()
}

/// (policies in precedence order, action, principal, resource, expected
/// effect, expected first reason "policy/rule" or "" for none).
const CASES: &[(&str, &str, &str, &str, &str, &str)] = &[
    // no policy: nothing is restricted
    ("", "export", "", "", "allow", "/no policy"),
    ("", "anything", "", "", "allow", "/no policy"),
    // allow lists
    (
        "medical",
        "read",
        "",
        "audit_trail=true",
        "allow",
        "medical/allow",
    ),
    (
        "medical",
        "analyze",
        "",
        "audit_trail=true",
        "allow",
        "medical/allow",
    ),
    (
        "medical",
        "aggregate",
        "",
        "audit_trail=true",
        "allow",
        "medical/allow",
    ),
    // deny lists
    (
        "medical",
        "export",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    (
        "medical",
        "persist",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    (
        "medical",
        "share",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    // default deny: what a policy does not allow it denies
    (
        "medical",
        "decrypt",
        "",
        "audit_trail=true",
        "deny",
        "medical/default deny",
    ),
    (
        "open_data",
        "persist",
        "",
        "",
        "deny",
        "open_data/default deny",
    ),
    ("empty", "read", "", "", "deny", "empty/default deny"),
    // requirements
    ("medical", "read", "", "", "deny", "medical/require"),
    (
        "medical",
        "read",
        "",
        "audit_trail=false",
        "deny",
        "medical/require",
    ),
    (
        "encrypted_only",
        "read",
        "",
        "encryption=homomorphic region=EU",
        "allow",
        "encrypted_only/allow",
    ),
    (
        "encrypted_only",
        "read",
        "",
        "encryption=aes region=EU",
        "deny",
        "encrypted_only/require",
    ),
    (
        "encrypted_only",
        "read",
        "",
        "encryption=homomorphic region=US",
        "deny",
        "encrypted_only/require",
    ),
    (
        "encrypted_only",
        "read",
        "",
        "region=EU",
        "deny",
        "encrypted_only/require",
    ),
    (
        "encrypted_only",
        "aggregate",
        "",
        "encryption=homomorphic",
        "deny",
        "encrypted_only/require",
    ),
    // conditions on the principal and the resource
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_2",
        "data_classification=medical retention_days=30",
        "allow",
        "clearance/allow",
    ),
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_3",
        "data_classification=medical retention_days=7",
        "allow",
        "clearance/allow",
    ),
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_1",
        "data_classification=medical retention_days=7",
        "deny",
        "clearance/condition",
    ),
    (
        "clearance",
        "read",
        "",
        "data_classification=medical retention_days=7",
        "deny",
        "clearance/condition",
    ),
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_2",
        "data_classification=financial retention_days=7",
        "deny",
        "clearance/condition",
    ),
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_2",
        "data_classification=medical retention_days=31",
        "deny",
        "clearance/condition",
    ),
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_2",
        "data_classification=medical",
        "deny",
        "clearance/condition",
    ),
    (
        "clearance",
        "export",
        "verified=true user_clearance=level_2",
        "data_classification=medical retention_days=1",
        "allow",
        "clearance/allow",
    ),
    (
        "clearance",
        "share",
        "verified=true user_clearance=level_9",
        "data_classification=medical retention_days=1",
        "deny",
        "clearance/default deny",
    ),
    // Issue 21, point 5: a principal attribute never stands for the data's.
    // A principal that said `data_classification=medical` used to win over
    // the records' class (allow); unqualified names are the resource's
    // first, and `data_classification` is the record's class.
    (
        "clearance",
        "read",
        "verified=true user_clearance=level_2 data_classification=medical",
        "data_classification=financial retention_days=1",
        "deny",
        "clearance/condition",
    ),
    (
        "retention",
        "persist",
        "geographic_restriction=EU",
        "retention_period=2592000 geographic_restriction=US",
        "deny",
        "retention/condition",
    ),
    // namespaces: each name is looked up in its own
    (
        "namespaced",
        "read",
        "clearance=level_2 verified=true",
        "region=EU record.class=public",
        "allow",
        "namespaced/allow",
    ),
    (
        "namespaced",
        "read",
        "clearance=level_2 verified=true region=EU",
        "region=US record.class=public",
        "deny",
        "namespaced/condition",
    ),
    (
        "namespaced",
        "read",
        "clearance=level_2 verified=true class=public",
        "region=EU record.class=restricted",
        "deny",
        "namespaced/condition",
    ),
    (
        "namespaced",
        "read",
        "verified=true",
        "region=EU clearance=level_9 record.class=public",
        "deny",
        "namespaced/condition",
    ),
    (
        "namespaced",
        "read",
        "clearance=level_3",
        "region=EU record.class=public",
        "deny",
        "namespaced/require",
    ),
    // an unqualified name sees a principal only if a credential vouches for it
    (
        "clearance",
        "read",
        "user_clearance=level_3",
        "data_classification=medical retention_days=7",
        "deny",
        "clearance/condition",
    ),
    // durations are seconds
    (
        "retention",
        "persist",
        "",
        "retention_period=2592000 geographic_restriction=EU",
        "allow",
        "retention/allow",
    ),
    (
        "retention",
        "persist",
        "",
        "retention_period=2592001 geographic_restriction=EU",
        "deny",
        "retention/condition",
    ),
    (
        "retention",
        "persist",
        "",
        "retention_period=86400 geographic_restriction=US",
        "deny",
        "retention/condition",
    ),
    // composition: every applicable policy must allow (inheritance adds policies)
    (
        "open_data,medical",
        "read",
        "",
        "audit_trail=true",
        "allow",
        "open_data/allow",
    ),
    (
        "open_data,medical",
        "export",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    (
        "medical,open_data",
        "export",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    (
        "open_data,medical",
        "share",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    (
        "open_data,encrypted_only",
        "export",
        "",
        "encryption=homomorphic region=EU",
        "deny",
        "encrypted_only/default deny",
    ),
    (
        "open_data,clearance",
        "export",
        "verified=true user_clearance=level_5",
        "data_classification=medical retention_days=3",
        "allow",
        "open_data/allow",
    ),
    (
        "open_data,clearance",
        "export",
        "verified=true user_clearance=level_0",
        "data_classification=medical retention_days=3",
        "deny",
        "clearance/condition",
    ),
    // precedence: the first denying policy in order is the reason shown
    (
        "empty,medical",
        "export",
        "",
        "audit_trail=true",
        "deny",
        "empty/default deny",
    ),
    (
        "medical,empty",
        "export",
        "",
        "audit_trail=true",
        "deny",
        "medical/deny",
    ),
    // conflicts within one policy: deny overrides, and it is reported
    (
        "contradictory",
        "export",
        "",
        "",
        "deny",
        "contradictory/deny",
    ),
    (
        "contradictory",
        "read",
        "",
        "",
        "allow",
        "contradictory/allow",
    ),
    // conflicts between policies: deny overrides
    (
        "open_data,contradictory",
        "export",
        "",
        "",
        "deny",
        "contradictory/deny",
    ),
];

fn decide(
    names: &str,
    action: &str,
    principal: &str,
    resource: &str,
) -> symbiont_operators::Decision {
    let defined = defined();
    let policies: Vec<Policy> = names
        .split(',')
        .filter(|n| !n.is_empty())
        .map(|n| defined[n].clone())
        .collect();
    let compiled = CompiledPolicies::compile(&policies).unwrap();
    let (p, mut r) = (attrs(principal), attrs(resource));
    // The table writes the record's class as `record.class` (or, as the
    // engine's legacy name, `data_classification`) among the resource's.
    let record: BTreeMap<String, PolicyValue> = ["record.class", "data_classification"]
        .iter()
        .filter_map(|k| r.remove(*k))
        .map(|v| ("class".to_owned(), v))
        .collect();
    let attributes = Attributes {
        principal: &p,
        resource: &r,
        asserted: &BTreeMap::new(),
        record: &record,
    };
    let decision = compiled.decide(action, &attributes);
    // The fast path agrees with the explained one.
    assert_eq!(
        compiled.allows(action, &attributes),
        decision.effect == Effect::Allow
    );
    decision
}

#[test]
fn the_decision_table() {
    assert!(CASES.len() >= 40, "{} cases", CASES.len());
    let mut failures = Vec::new();
    for (names, action, principal, resource, effect, reason) in CASES {
        let d = decide(names, action, principal, resource);
        let got_effect = match d.effect {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
        };
        let got_reason = format!("{}/{}", d.reasons[0].policy, d.reasons[0].rule);
        if got_effect != *effect || got_reason != *reason {
            failures.push(format!(
                "[{names}] {action} p={principal} r={resource}: expected {effect} by {reason}, got {got_effect} by {got_reason}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn conflicts_are_reported_not_silently_resolved() {
    let d = decide("open_data,medical", "export", "", "audit_trail=true");
    assert_eq!(d.conflicts.len(), 1, "{d:?}");
    assert!(d.conflicts[0].contains("allowed by open_data and denied by medical"));
    let d = decide("contradictory", "export", "", "");
    assert!(d.reasons.iter().any(|r| r.rule == "conflict"), "{d:?}");
}

fn policy_strategy() -> impl Strategy<Value = Policy> {
    let actions = prop::sample::subsequence(
        vec!["read", "analyze", "aggregate", "export", "persist", "share"],
        0..=6,
    )
    .prop_map(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
    (actions.clone(), actions).prop_map(|(allow, deny)| Policy {
        name: "p".into(),
        allow,
        deny,
        ..Policy::default()
    })
}

proptest! {
    #[test]
    fn adding_a_deny_rule_never_turns_a_denial_into_an_allow(
        policies in prop::collection::vec(policy_strategy(), 1..4),
        which in 0usize..4,
        added in prop::sample::select(vec!["read", "analyze", "aggregate", "export", "persist", "share"]),
        action in prop::sample::select(vec!["read", "analyze", "aggregate", "export", "persist", "share"]),
    ) {
        let none = BTreeMap::new();
        let a = Attributes { principal: &none, resource: &none, asserted: &none, record: &none };
        let before = CompiledPolicies::compile(&policies).unwrap().allows(action, &a);
        let mut more = policies.clone();
        let i = which % more.len();
        more[i].deny.push(added.to_owned());
        let after = CompiledPolicies::compile(&more).unwrap().allows(action, &a);
        prop_assert!(before || !after, "a denial became an allow");
    }

    #[test]
    fn removing_an_allow_rule_never_turns_a_denial_into_an_allow(
        policies in prop::collection::vec(policy_strategy(), 1..4),
        which in 0usize..4,
        action in prop::sample::select(vec!["read", "analyze", "aggregate", "export", "persist", "share"]),
    ) {
        let none = BTreeMap::new();
        let a = Attributes { principal: &none, resource: &none, asserted: &none, record: &none };
        let before = CompiledPolicies::compile(&policies).unwrap().allows(action, &a);
        let mut fewer = policies.clone();
        let i = which % fewer.len();
        if !fewer[i].allow.is_empty() {
            fewer[i].allow.remove(0);
        }
        let after = CompiledPolicies::compile(&fewer).unwrap().allows(action, &a);
        prop_assert!(before || !after, "a denial became an allow");
    }
}

fn symbi(args: &[&str], dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .output()
        .unwrap()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("symbi-policy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn export_denied_is_refused_before_anything_runs() {
    let dir = scratch("export");
    let o = symbi(&["check", "examples/export_denied.symbi"], &dir);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("examples/export_denied.symbi:18:5: error[E0401]: `export` is denied by the `deny` rule of policy `medical_data_policy`"),
        "{err}"
    );
    let o = symbi(
        &[
            "run",
            "examples/export_denied.symbi",
            "--input",
            "patients=examples/data/patients.csv",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    // Nothing ran: no audit log was even opened.
    assert!(!dir.join("state/symbiont/audit.log").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_examples_still_pass_their_policies() {
    let dir = scratch("examples");
    let o = symbi(
        &[
            "check",
            "examples/clinic_costs.symbi",
            "examples/diagnosis_breakdown.symbi",
        ],
        &dir,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_unmeetable_requirement_is_an_error_before_the_job() {
    let dir = scratch("require");
    let program = dir.join("p.symbi");
    let text = std::fs::read_to_string("examples/clinic_costs.symbi")
        .unwrap()
        .replace(
            "require: [audit_trail == true];",
            "require: [encryption == \"homomorphic\"];",
        );
    std::fs::write(&program, text).unwrap();
    let o = symbi(&["check", program.to_str().unwrap()], &dir);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error[E0402]"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tier_requirements_are_met_by_raising_and_caps_are_errors() {
    let dir = scratch("require-tier");
    let program = dir.join("p.symbi");
    let check = |require: &str| {
        let text = std::fs::read_to_string("examples/clinic_costs.symbi")
            .unwrap()
            .replace("require: [audit_trail == true];", require);
        std::fs::write(&program, text).unwrap();
        symbi(&["check", program.to_str().unwrap()], &dir)
    };
    // Met by raising the compute stages (tests/sandbox.rs runs them).
    for met in ["require: [tier >= 2];", "require: [tier > 2];"] {
        let o = check(met);
        assert_eq!(
            o.status.code(),
            Some(0),
            "{met}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A cap cannot be guaranteed: the risk table may put a stage higher.
    for cap in [
        "require: [tier <= 2];",
        "require: [tier == 1];",
        "require: [tier >= 1, tier < 3];",
    ] {
        let o = check(cap);
        assert_eq!(o.status.code(), Some(2), "{cap}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("error[E0402]"), "{cap}: {err}");
        assert!(err.contains("by raising stages"), "{cap}: {err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn principal_conditions_are_enforced_at_run_time_and_audited() {
    let dir = scratch("runtime");
    let program = dir.join("p.symbi");
    let text = std::fs::read_to_string("examples/clinic_costs.symbi")
        .unwrap()
        .replace(
            "require: [audit_trail == true];",
            "require: [audit_trail == true];\n    conditions: { principal.user_clearance: >= \"level_2\" }",
        );
    std::fs::write(&program, text).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            program.to_str().unwrap(),
            "--input",
            "patients=examples/data/patients.csv",
        ];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    let denied = run(&["--principal-unverified", "user_clearance=level_1"]);
    assert_eq!(denied.status.code(), Some(2));
    let err = String::from_utf8_lossy(&denied.stderr);
    assert!(err.contains("suspended"), "{err}");
    assert!(
        err.contains(
            "policy `medical_data_policy`, `condition`: requires principal.user_clearance >= \"level_2\""
        ),
        "{err}"
    );
    assert!(denied.stdout.is_empty());
    let allowed = run(&["--principal-unverified", "user_clearance=level_2"]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let o = symbi(&["audit", "show", "--format", "json"], &dir);
    let entries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let decisions: Vec<&serde_json::Value> = entries
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "policy_decision")
        .collect();
    assert!(decisions.iter().any(|e| e["detail"]["decision"] == "deny"));
    assert!(decisions.iter().any(|e| e["detail"]["decision"] == "allow"));
    assert_eq!(symbi(&["audit", "verify"], &dir).status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn policy_eval_prints_the_decision_and_its_rules() {
    let dir = scratch("eval");
    let file = dir.join("p.symbi");
    std::fs::write(&file, POLICIES).unwrap();
    let f = file.to_str().unwrap();
    let o = symbi(
        &[
            "policy", "eval", "--policy", f, "--name", "medical", "--action", "export", "--format",
            "json",
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    let d: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(d["effect"], "deny");
    assert_eq!(d["reasons"][0]["rule"], "deny");
    let o = symbi(
        &[
            "policy",
            "eval",
            "--policy",
            f,
            "--name",
            "clearance",
            "--action",
            "read",
            "--principal",
            "user_clearance=level_2",
            "--record",
            "class=medical",
            "--resource",
            "retention_days=10",
        ],
        &dir,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("allow `read`"));
    assert_eq!(
        symbi(
            &[
                "policy", "eval", "--policy", f, "--name", "nope", "--action", "read"
            ],
            &dir
        )
        .status
        .code(),
        Some(64)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_condition_the_engine_cannot_evaluate_is_e0403() {
    let program = symbiont_dsl::parse("policy p {\n    require: [a && b];\n}\n")
        .0
        .unwrap();
    let d = symbiont_dsl::check_policies(&program);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].code.as_str(), "E0403");
    let file = symbiont_dsl::SourceFile::new("p.symbi", "policy p {\n    require: [a && b];\n}\n");
    assert_eq!(file.line_col(d[0].span.start), (2, 15));
}

#[test]
fn extends_must_name_a_policy_and_not_loop() {
    let program = symbiont_dsl::parse(
        "policy a extends b {}\npolicy b extends a {}\npolicy c extends nope {}\n",
    )
    .0
    .unwrap();
    let codes: Vec<String> = symbiont_dsl::check(&program)
        .iter()
        .map(|d| format!("{}:{}", d.code.as_str(), d.message))
        .collect();
    assert_eq!(codes.len(), 3, "{codes:?}");
    assert!(codes.iter().all(|c| c.starts_with("E0105")));
    assert!(codes.iter().any(|c| c.contains("not defined")));
    assert!(codes.iter().any(|c| c.contains("extends itself")));
}

const TRIAGED: &str = r#"
struct Patient {
    patient_id: string, name: string, ssn: string, email: string, age: int,
    sex: string, zip: string, diagnosis: string, cost_cents: int, visits: int
}

policy clinic {
    allow: ["read", "analyze", "aggregate"];
    conditions: { principal.user_clearance: >= "level_2", data_classification: != "restricted" }
}

@classifier
agent triage(p: Patient) -> string {
    if (p.diagnosis == "HIV" || p.diagnosis == "oncology") {
        return "restricted";
    }
    return "public";
}

agent total(patients: Stream<Patient>) -> int
    with policy(clinic), classifier = "triage" {
    return sum(patients.map(p => p.cost_cents));
}
"#;

fn audit_kinds(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let o = symbi(&["audit", "show", "--format", "json"], dir);
    let entries: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    entries.as_array().unwrap().clone()
}

#[test]
fn a_record_of_a_forbidden_class_suspends_the_job_and_an_approval_resumes_it() {
    let dir = scratch("suspend");
    let program = dir.join("p.symbi");
    std::fs::write(&program, TRIAGED).unwrap();
    let p = program.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            p,
            "--input",
            "patients=examples/data/patients.csv",
            "--principal-unverified",
            "user_clearance=level_3",
        ];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    // Records classified restricted reach a stage whose policy forbids them:
    // suspended at the first one (line 6 of patients.csv is HIV), no result.
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(o.stdout.is_empty());
    assert!(err.contains("patients.csv:line 6"), "{err}");
    assert!(err.contains("(records classified restricted)"), "{err}");
    let request = dir.join("state/symbiont/requests");
    let request = std::fs::read_dir(&request)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let entries = audit_kinds(&dir);
    let suspended: Vec<_> = entries
        .iter()
        .filter(|e| e["kind"] == "stage_suspended")
        .collect();
    assert_eq!(suspended.len(), 1);
    assert_eq!(suspended[0]["detail"]["stage"]["line"], 6);
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "job_end" && e["detail"]["status"] == "suspended")
    );

    // An approver the keystore's owner added signs the request; the job
    // resumes. Her private key is hers, not the keystore's.
    let alice_key = dir.join("alice.key");
    let k = alice_key.to_str().unwrap();
    let o = symbi(&["keys", "add-approver", "alice", "--key-out", k], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let approval = dir.join("ok.approval");
    let a = approval.to_str().unwrap();
    let o = symbi(
        &[
            "approve",
            request.to_str().unwrap(),
            "--approver",
            "alice",
            "--key",
            k,
            "--reason",
            "IRB 2026-17",
            "--out",
            a,
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["--override-approval", a]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["_meta"]["lanes"]["homomorphic"], 179);
    let approvals: Vec<_> = audit_kinds(&dir)
        .into_iter()
        .filter(|e| e["kind"] == "approval")
        .collect();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0]["detail"]["approver"], "alice");
    assert_eq!(approvals[0]["detail"]["reason"], "IRB 2026-17");

    // Issue 21, point 5: an approval is single-use, and resumes one
    // suspended run once. The same file again used to override the same
    // violations for every later run until it expired; now it is refused,
    // whatever audit log the runner names.
    for log in [None, Some(dir.join("copied.log"))] {
        let mut args = vec!["--override-approval", a];
        if let Some(l) = &log {
            std::fs::copy(dir.join("state/symbiont/audit.log"), l).unwrap();
            args.extend(["--audit-log", l.to_str().unwrap()]);
        }
        let o = run(&args);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("was already resumed"), "{err}");
        assert!(o.stdout.is_empty(), "a result was released");
    }
    // Each new approval is for a new suspension of the job.
    let suspend_again = || {
        assert_eq!(run(&[]).status.code(), Some(2));
        let last = audit_kinds(&dir)
            .into_iter()
            .rfind(|e| e["kind"] == "stage_suspended")
            .unwrap();
        std::path::PathBuf::from(last["detail"]["request"].as_str().unwrap())
    };
    let sign_again = |name: &str, reason: &str| {
        let path = dir.join(name);
        let request = suspend_again();
        let o = symbi(
            &[
                "approve",
                request.to_str().unwrap(),
                "--approver",
                "alice",
                "--key",
                k,
                "--reason",
                reason,
                "--out",
                path.to_str().unwrap(),
            ],
            &dir,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        path
    };

    // Issue 21, point 6: an approval whose audit entry cannot be written
    // (a reason past the log's 16 MiB record limit) fails the job. It used
    // to run under the override with no `approval` entry at all.
    let req: symbiont_crypto::ApprovalRequest =
        serde_json::from_str(&std::fs::read_to_string(suspend_again()).unwrap()).unwrap();
    let unlogged = dir.join("unlogged.approval");
    let text = symbiont_crypto::sign_approval(
        "alice",
        &alice_key,
        req,
        &"r".repeat(17 << 20),
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .unwrap();
    std::fs::write(&unlogged, text).unwrap();
    let o = run(&["--override-approval", unlogged.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.stdout.is_empty(), "a result was released");
    assert_eq!(
        audit_kinds(&dir)
            .iter()
            .filter(|e| e["kind"] == "approval" && e["detail"]["refused"].is_null())
            .count(),
        1
    );

    // Issue 21, point 5: an approval binds the principal, the input's bytes
    // and the suspended run. Each used to be free: any principal, any
    // content under the same dataset id.
    let fresh = sign_again("fresh.approval", "IRB 2026-17, again");
    let f = fresh.to_str().unwrap();
    let o = symbi(
        &[
            "run",
            p,
            "--input",
            "patients=examples/data/patients.csv",
            "--override-approval",
            f,
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("approves another job (the principal differs)"),
        "{err}"
    );
    let req: symbiont_crypto::ApprovalRequest =
        serde_json::from_str(&std::fs::read_to_string(suspend_again()).unwrap()).unwrap();
    let edited = dir.join("edited.csv");
    let csv = std::fs::read_to_string("examples/data/patients.csv").unwrap();
    std::fs::write(&edited, csv.replacen("\n", "\n\n", 1)).unwrap();
    let o = symbi(
        &[
            "run",
            p,
            "--input",
            &format!("patients={}", edited.display()),
            "--dataset-id",
            &req.dataset,
            "--principal-unverified",
            "user_clearance=level_3",
            "--override-approval",
            f,
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(the input's SHA-256 differs)"), "{err}");
    let unsuspended = dir.join("unsuspended.approval");
    let text = symbiont_crypto::sign_approval(
        "alice",
        &alice_key,
        symbiont_crypto::ApprovalRequest {
            suspended_job: req.suspended_job + 1000,
            ..req.clone()
        },
        "no such run",
        std::time::SystemTime::now() + std::time::Duration::from_secs(3600),
    )
    .unwrap();
    std::fs::write(&unsuspended, text).unwrap();
    let o = run(&["--override-approval", unsuspended.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("no suspended run"), "{err}");
    assert!(o.stdout.is_empty(), "a result was released");
    // The fresh approval is still good for the run it binds.
    assert_eq!(run(&["--override-approval", f]).status.code(), Some(0));

    // An altered approval, one for another dataset, and one signed by a key
    // the keystore does not trust are refused (exit 2), and audited.
    let text = std::fs::read_to_string(&approval).unwrap();
    let altered = dir.join("altered.approval");
    std::fs::write(&altered, text.replace("IRB 2026-17", "IRB 2026-18")).unwrap();
    let o = run(&["--override-approval", altered.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("not signed by an approver this keystore trusts")
    );
    let copy = dir.join("copy.csv");
    std::fs::copy("examples/data/patients.csv", &copy).unwrap();
    let o = symbi(
        &[
            "run",
            p,
            "--input",
            &format!("patients={}", copy.display()),
            "--principal-unverified",
            "user_clearance=level_3",
            "--override-approval",
            a,
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("approves another job (the dataset differs)")
    );
    let other = dir.join("other");
    std::fs::create_dir_all(&other).unwrap();
    let o = symbi(
        &[
            "keys",
            "add-approver",
            "mallory",
            "--key-out",
            other.join("mallory.key").to_str().unwrap(),
            "--dir",
            other.join("ks").to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(1), "the keystore must exist first");
    assert!(
        symbi(
            &["keys", "init", "--dir", other.join("ks").to_str().unwrap()],
            &dir
        )
        .status
        .success()
    );
    assert!(
        symbi(
            &[
                "keys",
                "add-approver",
                "mallory",
                "--key-out",
                other.join("mallory.key").to_str().unwrap(),
                "--dir",
                other.join("ks").to_str().unwrap()
            ],
            &dir
        )
        .status
        .success()
    );
    let forged = dir.join("forged.approval");
    let o = symbi(
        &[
            "approve",
            request.to_str().unwrap(),
            "--approver",
            "mallory",
            "--reason",
            "trust me",
            "--key",
            other.join("mallory.key").to_str().unwrap(),
            "--out",
            forged.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["--override-approval", forged.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        audit_kinds(&dir)
            .iter()
            .any(|e| e["kind"] == "approval" && e["detail"]["refused"].is_string())
    );
    assert_eq!(symbi(&["audit", "verify"], &dir).status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn records_of_allowed_classes_run_without_suspension() {
    let dir = scratch("allowed-classes");
    let program = dir.join("p.symbi");
    // No record is restricted when nothing is classified so.
    std::fs::write(
        &program,
        TRIAGED.replace("\"restricted\";\n    }", "\"public\";\n    }"),
    )
    .unwrap();
    let o = symbi(
        &[
            "run",
            program.to_str().unwrap(),
            "--input",
            "patients=examples/data/patients.csv",
            "--principal-unverified",
            "user_clearance=level_2",
        ],
        &dir,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_encryption_requirement_forces_the_lane() {
    let dir = scratch("forced");
    let program = dir.join("p.symbi");
    let text = std::fs::read_to_string("examples/clinic_costs.symbi")
        .unwrap()
        .replace(
            "require: [audit_trail == true];",
            "require: [audit_trail == true, encryption == \"aes-256-gcm\"];",
        );
    std::fs::write(&program, text).unwrap();
    let p = program.to_str().unwrap();
    assert_eq!(symbi(&["check", p], &dir).status.code(), Some(0));
    let o = symbi(
        &["run", p, "--input", "patients=examples/data/patients.csv"],
        &dir,
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Public records were raised into the AES lane; restricted ones stay
    // above it; the result does not change.
    assert_eq!(v["_meta"]["lanes"]["plaintext"], 0);
    assert_eq!(v["_meta"]["lanes"]["aes_gcm"], 596 + 1225);
    assert_eq!(v["_meta"]["lanes"]["homomorphic"], 179);
    assert_eq!(v["_meta"]["min_lane"], "aes_gcm");
    let expected: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string("examples/clinic_costs.expected.json").unwrap(),
    )
    .unwrap();
    for (k, want) in expected.as_object().unwrap() {
        assert_eq!(&v[k], want, "{k}");
    }
    let plan = String::from_utf8_lossy(&symbi(&["explain", p], &dir).stdout).into_owned();
    assert!(
        plan.contains("raised to at least \"confidential\" (a policy requires its encryption)"),
        "{plan}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_dataset_carries_its_own_policies_and_they_travel_with_its_encrypted_copy() {
    let dir = scratch("dataset-policies");
    let data = dir.join("patients.csv");
    std::fs::copy("examples/data/patients.csv", &data).unwrap();
    let bind = format!("patients={}", data.display());
    let policy = dir.join("patients.csv.policy.symbi");
    let run = |bind: &str, extra: &[&str]| {
        let mut args = vec!["run", "examples/diagnosis_breakdown.symbi", "--input", bind];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };

    // Allow and deny rules: decided before anything runs, naming the
    // dataset's policy and its file.
    std::fs::write(
        &policy,
        "policy owner {\n    allow: [\"read\", \"analyze\"];\n}\n",
    )
    .unwrap();
    let o = run(&bind, &[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains(
            "error[E0401]: `aggregate` is denied by the `default deny` rule of policy `dataset:owner`"
        ),
        "{err}"
    );
    assert!(err.contains("is carried by the dataset:"), "{err}");
    assert!(err.contains("patients.csv.policy.symbi"), "{err}");
    assert!(
        !dir.join("state/symbiont/audit.log").exists(),
        "nothing ran"
    );

    // Conditions suspend; requirements force the lane.
    std::fs::write(
        &policy,
        "policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\", \"persist\"];\n    require: [encryption == \"aes-256-gcm\"];\n    conditions: { principal.purpose: \"research\" }\n}\n",
    )
    .unwrap();
    let o = run(&bind, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains(
        "policy `dataset:owner`, `condition`: requires principal.purpose == \"research\""
    ));
    let store = dir.join("store");
    let o = run(
        &bind,
        &[
            "--principal-unverified",
            "purpose=research",
            "--persist-encrypted",
            store.to_str().unwrap(),
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["_meta"]["lanes"]["plaintext"], 0);
    assert_eq!(v["_meta"]["min_lane"], "aes_gcm");

    // The encrypted copy carries the policy: the same conditions hold there.
    assert!(store.join("policy.symbi").exists());
    let stored = format!("patients={}", store.display());
    assert_eq!(run(&stored, &[]).status.code(), Some(2));
    assert_eq!(
        run(&stored, &["--principal-unverified", "purpose=research"])
            .status
            .code(),
        Some(0)
    );
    // Issue 21, points 5 and 8: the copy's policy is bound to it. Removed
    // (no policy used to mean allow) or altered, the store is refused,
    // naming the file.
    let carried = store.join("policy.symbi");
    let kept = std::fs::read(&carried).unwrap();
    for change in [
        None,
        Some("policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\"];\n}\n"),
    ] {
        match change {
            None => std::fs::remove_file(&carried).unwrap(),
            Some(text) => std::fs::write(&carried, text).unwrap(),
        }
        let o = run(&stored, &["--principal-unverified", "purpose=research"]);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("policy.symbi: not the file this dataset was persisted with"),
            "{err}"
        );
        assert!(o.stdout.is_empty());
    }
    std::fs::write(&carried, kept).unwrap();

    // A policy file may hold only policies.
    std::fs::write(&policy, "agent a(x: int) -> int {\n    return x;\n}\n").unwrap();
    let o = run(&bind, &[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains("holds only `policy` definitions"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn dataset_metadata_feeds_conditions_and_cannot_be_contradicted() {
    let dir = scratch("dataset-meta");
    let data = dir.join("patients.csv");
    std::fs::copy("examples/data/patients.csv", &data).unwrap();
    std::fs::write(
        dir.join("patients.csv.policy.symbi"),
        "policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\"];\n    conditions: { retention_period: <= 30.days, geographic_restriction: \"EU\" }\n}\n",
    )
    .unwrap();
    let bind = format!("patients={}", data.display());
    let run = |bind: &str, extra: &[&str]| {
        let mut args = vec!["run", "examples/clinic_costs.symbi", "--input", bind];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    // Without metadata the conditions cannot hold.
    assert_eq!(run(&bind, &[]).status.code(), Some(2));
    std::fs::write(
        dir.join("patients.csv.meta.json"),
        r#"{"attributes": {"retention_period": "14.days", "geographic_restriction": "EU"}}"#,
    )
    .unwrap();
    let o = run(&bind, &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The runner cannot claim otherwise.
    let o = run(&bind, &["--resource", "geographic_restriction=US"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("contradicts the dataset's metadata"));
    // Metadata that breaks a condition suspends the job.
    std::fs::write(
        dir.join("patients.csv.meta.json"),
        r#"{"attributes": {"retention_period": "90.days", "geographic_restriction": "EU"}}"#,
    )
    .unwrap();
    let o = run(&bind, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("retention_period <= 2592000"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21, point 5: who runs a job comes from a credential the
/// keystore's owner issued, and nothing the principal says stands for the
/// data's attributes.
#[test]
fn principals_come_from_signed_credentials_and_cannot_speak_for_the_data() {
    let dir = scratch("principals");
    let program = dir.join("p.symbi");
    std::fs::write(&program, TRIAGED).unwrap();
    let p = program.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", p, "--input", "patients=examples/data/patients.csv"];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    // The attack, as it ran on the old code: `--principal
    // data_classification=public` made every record's class condition
    // evaluate as public, and the restricted records were aggregated
    // (exit 0). Now the record's class is the record's, and a principal's
    // attribute cannot even be named so.
    let o = run(&[
        "--principal-unverified",
        "user_clearance=level_3",
        "--principal-unverified",
        "data_classification=public",
    ]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("(records classified restricted)"), "{err}");
    assert!(o.stdout.is_empty(), "a result was released");
    let o = run(&["--principal-unverified", "record.class=public"]);
    assert_eq!(o.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be a principal's attribute"));
    // `--principal` takes a credential, not an attribute.
    let o = run(&["--principal", "user_clearance=level_3"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());

    // The owner issues a credential; the job takes the principal from it.
    let ks = dir.join("data/symbiont");
    let ks = ks.to_str().unwrap();
    // (The runs above made the default keystore; this makes it if not.)
    let _ = symbi(&["keys", "init", "--dir", ks], &dir);
    let cred = dir.join("alice.principal");
    let c = cred.to_str().unwrap();
    let o = symbi(
        &[
            "keys",
            "issue-principal",
            "alice",
            "user_clearance=level_1",
            "--out",
            c,
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Level 1 does not meet the clearance condition: suspended before it
    // starts, on the credential's word.
    let o = run(&["--principal", c]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("requires principal.user_clearance >= \"level_2\""),
        "{err}"
    );
    // Raising one's own clearance in the file breaks the issuer's signature.
    let text = std::fs::read_to_string(&cred).unwrap();
    let raised = dir.join("raised.principal");
    std::fs::write(&raised, text.replace("level_1", "level_3")).unwrap();
    let o = run(&["--principal", raised.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not signed by this keystore's issuer key")
    );
    // A policy can refuse principals nobody vouches for.
    let strict = dir.join("strict.symbi");
    std::fs::write(
        &strict,
        TRIAGED.replace(
            "conditions: { principal.user_clearance: >= \"level_2\", data_classification: != \"restricted\" }",
            "require: [principal.verified == true];\n    conditions: { principal.user_clearance: >= \"level_2\" }",
        ),
    )
    .unwrap();
    let s = strict.to_str().unwrap();
    assert_eq!(symbi(&["check", s], &dir).status.code(), Some(0));
    let strict_run = |extra: &[&str]| {
        let mut args = vec!["run", s, "--input", "patients=examples/data/patients.csv"];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    let o = strict_run(&["--principal-unverified", "user_clearance=level_3"]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("requires principal.verified == true"), "{err}");
    let bob = dir.join("bob.principal");
    let o = symbi(
        &[
            "keys",
            "issue-principal",
            "bob",
            "user_clearance=level_3",
            "--out",
            bob.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(o.status.success());
    let o = strict_run(&["--principal", bob.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The audit log names who ran each job, and whether anyone vouched.
    let starts: Vec<serde_json::Value> = audit_kinds(&dir)
        .into_iter()
        .filter(|e| e["kind"] == "job_start")
        .map(|e| e["detail"]["principal"].clone())
        .collect();
    let last = starts.last().unwrap();
    assert_eq!(
        (last["name"].as_str(), last["verified"].as_bool()),
        (Some("bob"), Some(true))
    );
    assert!(starts.iter().any(|p| p["verified"] == false));
    // Unqualified names (the specification's style) see only what someone
    // vouches for: the dataset, the job, a signed credential. Neither the
    // runner's `--resource` nor an unverified principal meets them, and
    // the job's context cannot be asserted at all.
    let legacy = dir.join("legacy.symbi");
    std::fs::write(
        &legacy,
        std::fs::read_to_string("examples/clinic_costs.symbi").unwrap().replace(
            "require: [audit_trail == true];",
            "require: [audit_trail == true];\n    conditions: { user_clearance: >= \"level_2\" }",
        ),
    )
    .unwrap();
    let l = legacy.to_str().unwrap();
    let legacy_run = |extra: &[&str]| {
        let mut args = vec!["run", l, "--input", "patients=examples/data/patients.csv"];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    for asserted in [
        ["--resource", "user_clearance=level_3"],
        ["--principal-unverified", "user_clearance=level_3"],
    ] {
        let o = legacy_run(&asserted);
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{asserted:?}: {err}");
        assert!(
            err.contains("requires user_clearance >= \"level_2\""),
            "{err}"
        );
        assert!(o.stdout.is_empty(), "a result was released");
    }
    let o = legacy_run(&["--principal", bob.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    for context in ["tier=3", "encryption=aes-256-gcm", "audit_trail=true"] {
        let o = legacy_run(&["--resource", context]);
        assert_eq!(o.status.code(), Some(64), "{context}");
        assert!(String::from_utf8_lossy(&o.stderr).contains("the engine sets"));
    }
    // A principal cannot be issued an attribute in another namespace.
    let o = symbi(
        &[
            "keys",
            "issue-principal",
            "eve",
            "resource.geographic_restriction=EU",
            "--out",
            dir.join("eve.principal").to_str().unwrap(),
        ],
        &dir,
    );
    assert_eq!(o.status.code(), Some(64));
    assert_eq!(symbi(&["audit", "verify"], &dir).status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn qualified_attribute_names_name_a_known_namespace() {
    let dir = scratch("namespaces");
    let file = dir.join("p.symbi");
    for (conditions, ok) in [
        (
            "principal.role: \"analyst\", resource.region: \"EU\", record.class: \"public\"",
            true,
        ),
        ("user.role: \"analyst\"", false),
        ("record.age: 3", false),
        ("principal.a.b: 1", false),
    ] {
        std::fs::write(
            &file,
            format!(
                "policy p {{\n    allow: [\"read\"];\n    conditions: {{ {conditions} }}\n}}\n"
            ),
        )
        .unwrap();
        let o = symbi(&["check", file.to_str().unwrap()], &dir);
        let err = String::from_utf8_lossy(&o.stderr);
        if ok {
            assert_eq!(o.status.code(), Some(0), "{conditions}: {err}");
        } else {
            assert_eq!(o.status.code(), Some(3), "{conditions}: {err}");
            assert!(err.contains("error[E0403]"), "{conditions}: {err}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21, point 5: a plain file's policies are bound to it in the
/// keystore, by its content, so a renamed copy keeps them.
#[test]
fn a_dataset_bound_in_the_keystore_keeps_its_policies_under_another_name() {
    let dir = scratch("bound");
    let data = dir.join("patients.csv");
    std::fs::copy("examples/data/patients.csv", &data).unwrap();
    std::fs::write(
        dir.join("patients.csv.policy.symbi"),
        "policy owner {\n    allow: [\"read\", \"analyze\"];\n}\n",
    )
    .unwrap();
    let renamed = dir.join("renamed.csv");
    std::fs::copy(&data, &renamed).unwrap();
    let run = |input: &std::path::Path| {
        let bind = format!("patients={}", input.display());
        symbi(
            &[
                "run",
                "examples/diagnosis_breakdown.symbi",
                "--input",
                &bind,
            ],
            &dir,
        )
    };
    let denied = |o: &Output| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(err.contains("policy `dataset:owner`"), "{err}");
        assert!(o.stdout.is_empty());
    };
    denied(&run(&data));
    // The attack: the same bytes under another name leave the policy
    // file behind, and nothing restricts the job. This is what a file that
    // is not bound still does.
    assert_eq!(run(&renamed).status.code(), Some(0));

    // Bound, the bytes keep their policies under any name.
    let ks = dir.join("data/symbiont");
    let _ = symbi(&["keys", "init", "--dir", ks.to_str().unwrap()], &dir);
    let o = symbi(&["datasets", "bind", data.to_str().unwrap()], &dir);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    denied(&run(&renamed));
    std::fs::remove_file(dir.join("patients.csv.policy.symbi")).unwrap();
    denied(&run(&data));
    assert!(
        audit_kinds(&dir)
            .iter()
            .any(|e| e["kind"] == "key_event" && e["detail"]["event"] == "bound")
    );
    // A file beside it cannot say otherwise.
    let side = dir.join("renamed.csv.policy.symbi");
    std::fs::write(
        &side,
        "policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\"];\n}\n",
    )
    .unwrap();
    let o = run(&renamed);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("differs from what this dataset is bound to"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
    std::fs::remove_file(&side).unwrap();
    // Edited in place, a bound file is refused until it is bound again.
    let mut bytes = std::fs::read(&data).unwrap();
    bytes.extend_from_slice(b"\n");
    std::fs::write(&data, &bytes).unwrap();
    let o = run(&data);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("its bytes have changed since; bind it again"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue 21, point 8: an older, genuine encrypted copy of a dataset put in
/// place of a newer one is refused. Each copy's seal is valid on its own,
/// so the old code read the older copy, under its older, weaker policy.
#[test]
fn an_older_encrypted_copy_put_back_is_refused() {
    let dir = scratch("rollback");
    let data = dir.join("patients.csv");
    std::fs::copy("examples/data/patients.csv", &data).unwrap();
    let policy = dir.join("patients.csv.policy.symbi");
    let bind = format!("patients={}", data.display());
    let run = |input: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            "examples/diagnosis_breakdown.symbi",
            "--input",
            input,
        ];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    let persist = |to: &std::path::Path| {
        let args = ["--persist-encrypted", to.to_str().unwrap()];
        let o = run(
            &bind,
            &[&args[..], &["--principal-unverified", "purpose=research"]].concat(),
        );
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    };
    // The first copy carries a lenient policy; the second a strict one.
    std::fs::write(
        &policy,
        "policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\", \"persist\"];\n}\n",
    )
    .unwrap();
    let (old, new) = (dir.join("old"), dir.join("new"));
    persist(&old);
    std::fs::write(
        &policy,
        "policy owner {\n    allow: [\"read\", \"analyze\", \"aggregate\", \"persist\"];\n    conditions: { principal.purpose: \"research\" }\n}\n",
    )
    .unwrap();
    persist(&new);
    let stored = |d: &std::path::Path| format!("patients={}", d.display());
    // The latest copy answers to its policy.
    assert_eq!(run(&stored(&new), &[]).status.code(), Some(2));
    // The older one is refused, where it is and put in the newer one's
    // place.
    let refused = |o: Output| {
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(1), "{err}");
        assert!(
            err.contains("not the latest encrypted copy of dataset"),
            "{err}"
        );
        assert!(o.stdout.is_empty(), "a result was released");
    };
    refused(run(&stored(&old), &[]));
    let aside = dir.join("aside");
    std::fs::rename(&new, &aside).unwrap();
    std::fs::rename(&old, &new).unwrap();
    refused(run(&stored(&new), &[]));
    assert!(
        audit_kinds(&dir)
            .iter()
            .any(|e| e["kind"] == "key_event" && e["detail"]["event"] == "persisted")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// From a hostile review: an approval that overrides the job's violations
/// (here, the principal's clearance) used to lift the conditions on the
/// records too, since they were decided only for a job that was allowed;
/// the restricted records then flowed, though nobody approved them.
#[test]
fn an_approval_of_the_jobs_violations_does_not_lift_the_records_conditions() {
    let dir = scratch("approval-scope");
    let program = dir.join("p.symbi");
    std::fs::write(&program, TRIAGED).unwrap();
    let p = program.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            p,
            "--input",
            "patients=examples/data/patients.csv",
            "--principal-unverified",
            "user_clearance=level_1",
        ];
        args.extend_from_slice(extra);
        symbi(&args, &dir)
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("requires principal.user_clearance"), "{err}");
    let request = audit_kinds(&dir)
        .into_iter()
        .rfind(|e| e["kind"] == "stage_suspended")
        .unwrap()["detail"]["request"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = dir.join("alice.key");
    let k = key.to_str().unwrap();
    assert!(
        symbi(&["keys", "add-approver", "alice", "--key-out", k], &dir)
            .status
            .success()
    );
    let approval = dir.join("clearance.approval");
    let o = symbi(
        &[
            "approve",
            &request,
            "--approver",
            "alice",
            "--key",
            k,
            "--reason",
            "one-off",
            "--out",
            approval.to_str().unwrap(),
        ],
        &dir,
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = run(&["--override-approval", approval.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("(records classified restricted)"), "{err}");
    assert!(o.stdout.is_empty(), "a result was released");
    let _ = std::fs::remove_dir_all(&dir);
}
