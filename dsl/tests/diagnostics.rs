//! Negative tests: each asserts the exact diagnostic code and `line:col`.

use symbiont_dsl::{SourceFile, check, parse_bytes};

/// The `(code, line, col)` of every diagnostic for `source`.
fn diagnose(source: &str) -> Vec<(String, usize, usize)> {
    let parsed = parse_bytes(source.as_bytes());
    let diagnostics = match &parsed.program {
        Some(program) => check(program),
        None => parsed.diagnostics,
    };
    let file = SourceFile::new("test.symbi", source);
    diagnostics
        .iter()
        .map(|d| {
            let (line, col) = file.line_col(d.span.start);
            (d.code.as_str().to_owned(), line, col)
        })
        .collect()
}

const PATIENT: &str = "struct P { name: string, age: int }\n";

/// (what, source, expected diagnostics as "CODE@line:col").
const CASES: &[(&str, &str, &[&str])] = &[
    // ---- syntax
    ("unexpected token", "struct A { x: int ] }", &["E0001@1:19"]),
    (
        "missing semicolon",
        "agent a() { let x = 1 return x; }",
        &["E0002@1:22"],
    ),
    ("garbage at top level", "hello world", &["E0001@1:1"]),
    ("unterminated block", "agent a() {", &["E0002@1:12"]),
    (
        "integer overflow",
        "agent a() -> int { return 99999999999999999999; }",
        &["E0006@1:27"],
    ),
    (
        "unknown escape",
        "agent a() -> string { return \"a\\qb\"; }",
        &["E0006@1:32"],
    ),
    // ---- names
    (
        "unknown parameter type",
        "agent a(x: Patient) {}",
        &["E0101@1:12"],
    ),
    (
        "unknown field type",
        "struct A { x: Money }",
        &["E0101@1:15"],
    ),
    (
        "unknown generic",
        "agent a(x: Bag<int>) {}",
        &["E0101@1:12"],
    ),
    (
        "unknown struct literal",
        "agent a() { let x = Nope { a: 1 }; }",
        &["E0101@1:21"],
    ),
    (
        "unknown field access",
        "struct P { age: int }\nagent a(p: P) -> int { return p.height; }",
        &["E0102@2:33"],
    ),
    (
        "unknown struct literal field",
        "struct P { age: int }\nagent a() -> P { return P { age: 1, height: 2 }; }",
        &["E0102@2:37"],
    ),
    (
        "unknown enum variant",
        "enum L { Lo, Hi }\nagent a() { let x = L.Mid; }",
        &["E0102@2:23"],
    ),
    (
        "unknown variable",
        "agent a() -> int { return y; }",
        &["E0103@1:27"],
    ),
    (
        "assignment to undefined",
        "agent a() { z = 1; }",
        &["E0103@1:13"],
    ),
    (
        "variable out of scope",
        "agent a() -> int { if (true) { let x = 1; } return x; }",
        &["E0103@1:52"],
    ),
    (
        "unknown classifier agent",
        "agent a() with classifier = \"nope\" {}",
        &["E0104@1:29"],
    ),
    (
        "unknown agent call",
        "agent a() { let r = agent ghost.run(); }",
        &["E0104@1:27"],
    ),
    (
        "unknown policy",
        "agent a() with policy(missing) {}",
        &["E0105@1:23"],
    ),
    (
        "unknown function",
        "agent a() -> int { return frobnicate(1); }",
        &["E0106@1:27"],
    ),
    (
        "unknown method",
        "agent a(s: string) -> int { return s.size(); }",
        &["E0106@1:38"],
    ),
    (
        "unknown pii detector",
        "agent a(s: string) -> bool { return pii.passport(s); }",
        &["E0106@1:41"],
    ),
    (
        "duplicate struct",
        "struct A { x: int }\nstruct A { y: int }",
        &["E0107@2:8"],
    ),
    (
        "duplicate agent",
        "agent a() {}\nagent a() {}",
        &["E0107@2:7"],
    ),
    (
        "duplicate policy",
        "policy p { allow: [\"read\"] }\npolicy p { deny: [\"export\"] }",
        &["E0107@2:8"],
    ),
    (
        "duplicate field",
        "struct A { x: int, x: string }",
        &["E0108@1:20"],
    ),
    (
        "duplicate parameter",
        "agent a(x: int, x: int) {}",
        &["E0108@1:17"],
    ),
    ("duplicate variant", "enum E { A, B, A }", &["E0108@1:16"]),
    (
        "duplicate condition key",
        "policy p { conditions: { region: \"EU\", region: \"US\" } }",
        &["E0108@1:40"],
    ),
    // ---- types
    (
        "wrong arity of builtin",
        "agent a(s: Stream<int>) -> int { return count(s, s); }",
        &["E0201@1:41"],
    ),
    (
        "wrong generic arity",
        "agent a(s: Stream<int, int>) {}",
        &["E0201@1:12"],
    ),
    (
        "classifier with two parameters",
        "@classifier\nagent c(a: int, b: int) -> string { return \"public\"; }",
        &["E0201@2:7"],
    ),
    (
        "lambda arity",
        "agent a(s: Stream<int>) -> Stream<int> { return s.filter((x, y) => true); }",
        &["E0201@1:58"],
    ),
    (
        "string minus int",
        "agent a() -> int { return \"a\" - 1; }",
        &["E0202@1:27"],
    ),
    (
        "not on int",
        "agent a() -> bool { return !1; }",
        &["E0202@1:28"],
    ),
    (
        "and on ints",
        "agent a() -> bool { return 1 && 2; }",
        &["E0202@1:28"],
    ),
    (
        "mixed array",
        "agent a() { let x = [1, \"b\"]; }",
        &["E0202@1:25"],
    ),
    (
        "return type mismatch",
        "agent a() -> int { return \"text\"; }",
        &["E0203@1:27"],
    ),
    (
        "return value from void agent",
        "agent a() { return 1; }",
        &["E0203@1:20"],
    ),
    (
        "empty return with declared type",
        "agent a() -> int { return; }",
        &["E0203@1:20"],
    ),
    (
        "argument type",
        "agent a(s: Stream<string>) -> int { return sum(s); }",
        &["E0204@1:48"],
    ),
    (
        "filter with non-bool predicate",
        "agent a(s: Stream<int>) -> Stream<int> { return s.filter(x => x + 1); }",
        &["E0204@1:58"],
    ),
    (
        "pii detector on int",
        "agent a(n: int) -> bool { return pii.ssn(n); }",
        &["E0204@1:42"],
    ),
    (
        "export path not string",
        "agent a(s: Stream<int>) { export(s, 3); }",
        &["E0204@1:37"],
    ),
    (
        "if condition not bool",
        "agent a() { if (1) {} }",
        &["E0205@1:17"],
    ),
    (
        "while condition not bool",
        "agent a() { while (\"x\") {} }",
        &["E0205@1:20"],
    ),
    (
        "missing struct field",
        "struct P { a: int, b: int }\nagent f() -> P { return P { a: 1 }; }",
        &["E0206@2:25"],
    ),
    (
        "let with wrong type",
        "agent a() { let x: int = \"s\"; }",
        &["E0207@1:26"],
    ),
    (
        "field value of wrong type",
        "struct P { a: int }\nagent f() -> P { return P { a: \"x\" }; }",
        &["E0207@2:32"],
    ),
    (
        "assignment of wrong type",
        "agent a() { let x = 1; x = true; }",
        &["E0207@1:28"],
    ),
    (
        "classifier returns unknown class",
        "@classifier\nagent c(p: int) -> string { return \"secret\"; }",
        &["E0208@2:36"],
    ),
    (
        "classifier returns computed value",
        "@classifier\nagent c(p: string) -> string { return p; }",
        &["E0208@2:39"],
    ),
    (
        "classifier returns int",
        "@classifier\nagent c(p: int) -> int { return 1; }",
        &["E0208@2:20"],
    ),
    (
        "calling a number",
        "agent a() { let x = 1; let y = x(2); }",
        &["E0209@1:32"],
    ),
    (
        "classifier metadata names a plain agent",
        "agent t(p: int) -> string { return \"public\"; }\nagent a() with classifier = \"t\" {}",
        &["E0210@2:29"],
    ),
    (
        "prove an unknown output",
        "struct R { total: int }\nagent a() -> R with prove(count) { return R { total: 1 }; }",
        &["E0210@2:27"],
    ),
    (
        "unknown sandbox",
        "agent a() with sandbox = \"docker\" { }",
        &["E0210@1:26"],
    ),
    (
        "missing return",
        "agent a(x: int) -> int { if (x > 1) { return 1; } }",
        &["E0211@1:51"],
    ),
    (
        "action not a string",
        "policy p { allow: [read] }",
        &["E0212@1:20"],
    ),
    (
        "iterate over an int",
        "agent a() { for x in 3 {} }",
        &["E0213@1:22"],
    ),
    (
        "range bounds out of order",
        "type Age = int with range(150, 0);",
        &["E0214@1:21"],
    ),
    (
        "range of a string literal",
        "type Age = int with range(0, \"150\");",
        &["E0214@1:21"],
    ),
    (
        "range twice",
        "type Age = int with range(0, 150), range(0, 10);",
        &["E0214@1:36"],
    ),
    (
        "range on a string",
        "type Name = string with range(0, 10);",
        &["E0214@1:25"],
    ),
];

#[test]
fn each_problem_has_its_code_and_position() {
    let mut failures = Vec::new();
    for (what, source, expected) in CASES {
        let found: Vec<String> = diagnose(source)
            .into_iter()
            .map(|(code, line, col)| format!("{code}@{line}:{col}"))
            .collect();
        if found != *expected {
            failures.push(format!(
                "{what}: expected {expected:?}, found {found:?}\n    {source}"
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn every_code_is_tested_and_documented() {
    let docs = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/DIAGNOSTICS.md"
    ))
    .expect("docs/DIAGNOSTICS.md exists");
    let tested: std::collections::HashSet<&str> = CASES
        .iter()
        .flat_map(|(_, _, e)| e.iter().map(|c| &c[..5]))
        .chain(["E0003", "E0004", "E0005"]) // in tests/robustness.rs
        .collect();
    // E0301 is tested in tests/run.rs, E0401-E0403 in tests/policy.rs.
    for code in ["E0301", "E0401", "E0402", "E0403"] {
        assert!(
            docs.contains(&format!("## {code}")),
            "{code} is not in docs/DIAGNOSTICS.md"
        );
    }
    for n in (1..=6).chain(101..=108).chain(201..=213) {
        let code = format!("E{n:04}");
        assert!(
            tested.contains(code.as_str()),
            "{code} has no negative test"
        );
        assert!(
            docs.contains(&format!("## {code}")),
            "{code} is not in docs/DIAGNOSTICS.md"
        );
    }
}

#[test]
fn several_problems_in_one_file_are_all_reported() {
    let source = format!(
        "{PATIENT}agent a(p: P) -> int {{\n    let x = p.height;\n    return y + undefined_fn(1);\n}}\n"
    );
    let found: Vec<String> = diagnose(&source)
        .into_iter()
        .map(|(code, line, col)| format!("{code}@{line}:{col}"))
        .collect();
    assert_eq!(found, ["E0102@3:15", "E0103@4:12", "E0106@4:16"]);
}

#[test]
fn several_syntax_errors_are_all_reported() {
    let found = diagnose("struct A { x: int ] }\nstruct B { y: ] }\n");
    assert!(found.len() >= 2, "{found:?}");
    assert!(found.iter().any(|(_, line, _)| *line == 1));
    assert!(found.iter().any(|(_, line, _)| *line == 2));
}

#[test]
fn human_rendering_follows_the_cli_contract() {
    let source = "agent a() -> int {\n    return \"text\";\n}\n";
    let parsed = parse_bytes(source.as_bytes());
    let diagnostics = check(parsed.program.as_ref().unwrap());
    let rendered = SourceFile::new("prog.symbi", source).render(&diagnostics, false);
    let mut lines = rendered.lines();
    assert_eq!(
        lines.next(),
        Some("prog.symbi:2:12: error[E0203]: expected `int`, found `string`")
    );
    assert!(rendered.contains("2 │     return \"text\";"), "{rendered}");
    assert!(rendered.contains("^^^^^^"), "{rendered}");
}

#[test]
fn json_rendering_carries_position_and_code() {
    let source = "agent a() -> int { return y; }";
    let parsed = parse_bytes(source.as_bytes());
    let diagnostics = check(parsed.program.as_ref().unwrap());
    let json = SourceFile::new("p.symbi", source).to_json(&diagnostics);
    assert_eq!(json.len(), 1);
    assert_eq!(json[0]["file"], "p.symbi");
    assert_eq!(json[0]["line"], 1);
    assert_eq!(json[0]["column"], 27);
    assert_eq!(json[0]["code"], "E0103");
}
