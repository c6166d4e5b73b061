//! The spec's programs (dsl/tests/fixtures/) and the normative examples
//! (examples/): they parse, the examples type-check, and formatting is
//! idempotent and keeps meaning and comments.

use std::path::{Path, PathBuf};

use symbiont_dsl::{check, format_program, parse};

fn symbi_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "symbi"))
        .collect();
    files.sort();
    files
}

fn all_programs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = symbi_files(&root.join("tests/fixtures"));
    files.extend(symbi_files(&root.join("../examples")));
    files
}

#[test]
fn every_spec_program_and_example_parses() {
    let files = all_programs();
    // Six spec sections and three examples.
    assert_eq!(files.len(), 9, "{files:?}");
    for file in files {
        let source = std::fs::read_to_string(&file).unwrap();
        let (program, diagnostics) = parse(&source);
        assert!(
            diagnostics.is_empty(),
            "{}: {diagnostics:?}",
            file.display()
        );
        assert!(program.is_some());
    }
}

#[test]
fn the_runnable_examples_type_check() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for name in [
        "clinic_costs.symbi",
        "diagnosis_breakdown.symbi",
        "export_denied.symbi",
    ] {
        let source = std::fs::read_to_string(root.join(name)).unwrap();
        let program = parse(&source).0.unwrap();
        assert_eq!(check(&program), vec![], "{name}");
    }
}

#[test]
fn the_spec_programs_use_names_they_never_define() {
    // Full checking reports them; this is why `--syntax-only` exists.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let source =
        std::fs::read_to_string(root.join("spec_6_2_1_policy_aware_programming.symbi")).unwrap();
    let diagnostics = check(&parse(&source).0.unwrap());
    assert!(
        diagnostics
            .iter()
            .any(|d| d.code.as_str() == "E0101" && d.message.contains("EncryptedHealthRecord"))
    );
}

#[test]
fn formatting_is_idempotent_and_keeps_meaning_and_comments() {
    for file in all_programs() {
        let source = std::fs::read_to_string(&file).unwrap();
        let program = parse(&source).0.unwrap();
        let once = format_program(&program, Some(&source));
        let reparsed = parse(&once).0.unwrap_or_else(|| {
            panic!(
                "{}: formatted output does not parse:\n{once}",
                file.display()
            )
        });
        assert_eq!(reparsed.shape(), program.shape(), "{}", file.display());
        let twice = format_program(&reparsed, Some(&once));
        assert_eq!(twice, once, "{}: not idempotent", file.display());
        assert_eq!(reparsed.comments.len(), program.comments.len());
    }
}

#[test]
fn the_examples_are_already_formatted() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for file in symbi_files(&root) {
        let source = std::fs::read_to_string(&file).unwrap();
        let program = parse(&source).0.unwrap();
        assert_eq!(
            format_program(&program, Some(&source)),
            source,
            "{}",
            file.display()
        );
    }
}

#[test]
fn comments_in_odd_places_survive_formatting() {
    let source = "// file header\n\n/* before */ struct A { // after brace\n    x: int, // trailing\n    // before y\n    y: int\n    // at the end\n}\nagent a() -> int {\n    return 1 + /* inside */ 2; // done\n    // last\n}\n// eof\n";
    let program = parse(source).0.unwrap();
    let formatted = format_program(&program, Some(source));
    let texts = |s: &str| {
        parse(s)
            .0
            .unwrap()
            .comments
            .into_iter()
            .map(|c| c.text)
            .collect::<Vec<_>>()
    };
    assert_eq!(texts(&formatted), texts(source), "{formatted}");
    assert_eq!(
        format_program(&parse(&formatted).0.unwrap(), Some(&formatted)),
        formatted
    );
}

#[test]
fn the_program_snippets_in_the_docs_parse() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut snippets = 0;
    for doc in ["docs/LANGUAGE.md", "README.md"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap();
        for block in text.split("```symbiont\n").skip(1) {
            let code = block.split("```").next().unwrap();
            let (program, diagnostics) = parse(code);
            assert!(diagnostics.is_empty(), "{doc}: {diagnostics:?}\n{code}");
            let program = program.unwrap();
            if doc == "README.md" {
                // The README's program is complete, checked and formatted.
                assert_eq!(check(&program), vec![], "{code}");
                assert_eq!(format_program(&program, Some(code)), code);
            }
            snippets += 1;
        }
    }
    assert!(snippets >= 3, "{snippets} snippets");
}
