//! The `symbi` command line: verbs, exit codes and output streams
//! (DESIGN.md, "CLI contract").

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn symbi(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn symbi_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_symbi"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("symbi-cli-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn spec_fixtures() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dsl/tests/fixtures");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn check_accepts_the_examples() {
    let o = symbi(&[
        "check",
        "examples/clinic_costs.symbi",
        "examples/diagnosis_breakdown.symbi",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
}

#[test]
fn syntax_only_accepts_every_spec_program_and_example() {
    let mut args = vec!["check".to_owned(), "--syntax-only".to_owned()];
    args.extend(spec_fixtures());
    args.extend(
        ["clinic_costs", "diagnosis_breakdown", "export_denied"]
            .map(|n| format!("examples/{n}.symbi")),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = symbi(&args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn full_check_of_a_spec_program_exits_3_with_located_diagnostics() {
    let fixtures = spec_fixtures();
    let o = symbi(&["check", &fixtures[1]]);
    assert_eq!(code(&o), 3);
    let err = stderr(&o);
    assert!(
        err.contains("spec_6_2_1_policy_aware_programming.symbi:3:42: error[E0101]: unknown type `EncryptedHealthRecord`"),
        "{err}"
    );
}

#[test]
fn json_diagnostics_go_to_stdout() {
    let scratch = Scratch::new("json");
    let bad = scratch.file("bad.symbi", "agent a() -> int {\n    return y;\n}\n");
    let o = symbi(&["check", "--format", "json", bad.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json[0]["code"], "E0103");
    assert_eq!(json[0]["line"], 2);
    assert_eq!(json[0]["column"], 12);
    assert!(o.stderr.is_empty());
}

#[test]
fn usage_errors_exit_64_and_help_exits_0() {
    assert_eq!(code(&symbi(&[])), 64);
    assert_eq!(code(&symbi(&["check"])), 64);
    assert_eq!(code(&symbi(&["check", "--no-such-flag", "x.symbi"])), 64);
    assert_eq!(code(&symbi(&["frobnicate"])), 64);
    assert_eq!(code(&symbi(&["check", "--format", "yaml", "x.symbi"])), 64);
    let help = symbi(&["--help"]);
    assert_eq!(code(&help), 0);
    assert!(String::from_utf8_lossy(&help.stdout).contains("check"));
}

#[test]
fn an_unreadable_file_is_a_runtime_error_naming_it() {
    let o = symbi(&["check", "does/not/exist.symbi"]);
    assert_eq!(code(&o), 1);
    assert!(
        stderr(&o).contains("does/not/exist.symbi"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn fmt_rewrites_in_place_and_check_reports_unformatted_files() {
    let scratch = Scratch::new("fmt");
    let messy = "struct A{x:int,y:string}\n\n\n// keep me\nagent a( p : A )->int{return p.x+1;}\n";
    let path = scratch.file("messy.symbi", messy);
    let p = path.to_str().unwrap();

    let o = symbi(&["fmt", "--check", p]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("not formatted"));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        messy,
        "--check writes nothing"
    );

    assert_eq!(code(&symbi(&["fmt", p])), 0);
    let formatted = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        formatted,
        "struct A {\n    x: int,\n    y: string\n}\n\n// keep me\nagent a(p: A) -> int {\n    return p.x + 1;\n}\n"
    );
    assert_eq!(code(&symbi(&["fmt", "--check", p])), 0);
    assert_eq!(
        code(&symbi(&["fmt", "--check", "examples/clinic_costs.symbi"])),
        0
    );
}

#[test]
fn fmt_leaves_an_invalid_file_alone_and_exits_3() {
    let scratch = Scratch::new("fmt-invalid");
    let broken = "struct A { x: int ] }\n";
    let path = scratch.file("broken.symbi", broken);
    let o = symbi(&["fmt", path.to_str().unwrap()]);
    assert_eq!(code(&o), 3);
    assert!(stderr(&o).contains("error[E0001]"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), broken);
}

#[test]
fn fmt_reads_stdin_and_writes_stdout() {
    let o = symbi_stdin(&["fmt", "-"], "enum E{A,B}");
    assert_eq!(code(&o), 0);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "enum E {\n    A,\n    B\n}\n"
    );
}
