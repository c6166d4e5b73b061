//! Whatever the input, the front end answers with diagnostics: never a
//! panic, never a stack overflow.

use symbiont_dsl::{Code, MAX_NESTING, MAX_SOURCE_BYTES, check, format_program, parse_bytes};

/// Parses, checks and formats `bytes`, returning the diagnostic codes.
fn codes(bytes: &[u8]) -> Vec<Code> {
    let parsed = parse_bytes(bytes);
    if let Some(program) = &parsed.program {
        let _ = format_program(program, Some(&parsed.text));
        return check(program).into_iter().map(|d| d.code).collect();
    }
    parsed.diagnostics.into_iter().map(|d| d.code).collect()
}

#[test]
fn empty_file_is_an_empty_valid_program() {
    assert_eq!(codes(b""), vec![]);
    assert_eq!(codes(b"  \n// only a comment\n"), vec![]);
}

#[test]
fn invalid_utf8_is_reported_with_its_offset() {
    let parsed = parse_bytes(b"struct A { x: int }\n\xff\xfe");
    assert!(parsed.program.is_none());
    assert_eq!(parsed.diagnostics.len(), 1);
    assert_eq!(parsed.diagnostics[0].code, Code::E0003);
    assert_eq!(parsed.diagnostics[0].span.start, 20);
    assert!(parsed.diagnostics[0].message.contains("byte offset 20"));
}

#[test]
fn binary_garbage_gives_syntax_errors() {
    // A fixed pseudo-random byte soup, kept valid UTF-8 by masking.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let bytes: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 128) as u8
        })
        .collect();
    let found = codes(&bytes);
    assert!(!found.is_empty());
    assert!(found.iter().all(|c| matches!(c, Code::E0001 | Code::E0002)));
    // At most 25 syntax errors are listed.
    assert!(found.len() <= 25, "{} diagnostics", found.len());
}

#[test]
fn nul_bytes_are_syntax_errors() {
    assert_eq!(codes(b"struct A \0{ x: int }").first(), Some(&Code::E0001));
}

fn nested_parens(depth: usize) -> String {
    format!(
        "agent a() -> int {{ return {}1{}; }}",
        "(".repeat(depth),
        ")".repeat(depth)
    )
}

#[test]
fn deep_but_allowed_nesting_is_checked_and_formatted() {
    // Each parenthesis is one syntax level; the agent, block and return
    // take a few more.
    assert_eq!(codes(nested_parens(MAX_NESTING - 8).as_bytes()), vec![]);
}

#[test]
fn one_hundred_thousand_nested_parentheses_are_rejected_cleanly() {
    assert_eq!(codes(nested_parens(100_000).as_bytes()), vec![Code::E0004]);
    let unbalanced = "(".repeat(100_000);
    assert!(!codes(unbalanced.as_bytes()).is_empty());
}

#[test]
fn deeply_nested_blocks_and_operators_are_rejected_cleanly() {
    let blocks = format!(
        "agent a() {{ {}{} }}",
        "{".repeat(50_000),
        "}".repeat(50_000)
    );
    assert_eq!(codes(blocks.as_bytes()), vec![Code::E0004]);
    let chain = format!("agent a() -> int {{ return 1{}; }}", " + 1".repeat(50_000));
    assert_eq!(codes(chain.as_bytes()), vec![Code::E0004]);
    let unary = format!("agent a() -> int {{ return {}1; }}", "-".repeat(50_000));
    assert_eq!(codes(unary.as_bytes()), vec![Code::E0004]);
}

#[test]
fn a_fifty_megabyte_file_is_refused_with_a_diagnostic() {
    let line = "struct S { a: int }\n";
    let big = line.repeat(50 * 1024 * 1024 / line.len());
    assert!(big.len() > MAX_SOURCE_BYTES);
    assert_eq!(codes(big.as_bytes()), vec![Code::E0005]);
}

#[test]
fn a_file_just_under_the_limit_parses() {
    let mut source = String::new();
    let mut i = 0;
    while source.len() + 64 < MAX_SOURCE_BYTES {
        source.push_str(&format!("struct S{i} {{ a: int }}\n"));
        i += 1;
    }
    assert_eq!(codes(source.as_bytes()), vec![]);
}
