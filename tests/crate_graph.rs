//! The crates point one way: the DSL front end and the auditor's verifier
//! build without the engine's heavy dependencies (docs/ARCHITECTURE.md).
//! Read from `cargo tree`, so a new dependency edge fails here, not in an
//! auditor's build.

use std::process::Command;

/// What `cargo tree` says `package` builds (normal and build
/// dependencies, not dev-dependencies), one crate name per entry.
fn builds(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo tree -p {package}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect();
    assert!(
        names.iter().any(|n| n == package),
        "cargo tree printed no {package}:\n{text}"
    );
    names
}

fn assert_builds_without(package: &str, heavy: &[&str]) {
    let names = builds(package);
    let found: Vec<&String> = names
        .iter()
        .filter(|n| {
            heavy
                .iter()
                .any(|h| n.as_str() == *h || n.starts_with(&format!("{h}-")))
        })
        .collect();
    assert!(found.is_empty(), "{package} builds {found:?}");
}

#[test]
fn the_dsl_builds_without_the_engine() {
    assert_builds_without(
        "symbiont-dsl",
        &[
            "timely",
            "differential-dataflow",
            "arrow",
            "parquet",
            "tfhe",
            "nix",
            "symbiont-operators",
            "symbiont-crypto",
            "symbiont-sandbox",
        ],
    );
}

#[test]
fn the_verifier_builds_without_tfhe_or_the_dataflow() {
    assert_builds_without(
        "symbiont-verify",
        &[
            "tfhe",
            "timely",
            "differential-dataflow",
            "arrow",
            "parquet",
            "nix",
            "symbiont-operators",
            "symbiont-crypto",
            "symbiont-engine",
        ],
    );
}

/// The check itself sees what it looks for: the engine does build timely
/// and tfhe.
#[test]
fn the_engine_builds_timely_and_tfhe() {
    let names = builds("symbiont-engine");
    for heavy in ["timely", "tfhe", "differential-dataflow"] {
        assert!(names.iter().any(|n| n == heavy), "no {heavy} in {names:?}");
    }
}
