//! Runs the grammar's corpus tests (`tree-sitter-symbiont/test/corpus/`)
//! through the tree-sitter runtime linked into this crate, so CI needs no
//! tree-sitter CLI. The files use the CLI's format; `tree-sitter test` in
//! the grammar directory runs them too.

use std::path::Path;

struct Case {
    file: String,
    name: String,
    input: String,
    expected: String,
}

fn is_rule(line: &str, c: char) -> bool {
    line.len() >= 3 && line.chars().all(|x| x == c)
}

fn cases(path: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut cases = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if !is_rule(lines[i], '=') {
            i += 1;
            continue;
        }
        let name = lines[i + 1].trim().to_owned();
        assert!(
            is_rule(lines[i + 2], '='),
            "{}: malformed header",
            path.display()
        );
        let body_start = i + 3;
        let divider = (body_start..lines.len())
            .find(|&j| is_rule(lines[j], '-'))
            .expect("a divider after the input");
        let end = (divider + 1..lines.len())
            .find(|&j| is_rule(lines[j], '=') && j + 2 < lines.len() && is_rule(lines[j + 2], '='))
            .unwrap_or(lines.len());
        cases.push(Case {
            file: path.file_name().unwrap().to_string_lossy().into_owned(),
            name,
            input: lines[body_start..divider].join("\n").trim().to_owned(),
            expected: lines[divider + 1..end].join("\n"),
        });
        i = end;
    }
    cases
}

/// Whitespace-normalized S-expression without field names.
fn normalize(sexp: &str) -> String {
    sexp.replace('(', " (")
        .replace(')', ") ")
        .split_whitespace()
        .filter(|token| !token.ends_with(':') || token.starts_with('"'))
        .collect::<Vec<_>>()
        .join(" ")
        .replace("( ", "(")
        .replace(" )", ")")
}

#[test]
fn corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tree-sitter-symbiont/test/corpus");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut count = 0;
    let mut failures = Vec::new();
    for file in &files {
        for case in cases(file) {
            count += 1;
            let tree = symbiont_dsl::parse_cst(&case.input);
            let actual = normalize(&tree.root_node().to_sexp());
            let expected = normalize(&case.expected);
            if actual != expected {
                failures.push(format!(
                    "{} / {}\n  expected: {expected}\n  actual:   {actual}",
                    case.file, case.name
                ));
            }
        }
    }
    assert!(count >= 40, "only {count} corpus cases found");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
