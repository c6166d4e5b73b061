//! The Symbiont DSL front end: from source text to a checked, typed AST.
//!
//! The main entry points are:
//!
//! - [`parse_bytes`] / [`parse`]: the tree-sitter parse (grammar in
//!   `tree-sitter-symbiont/grammar.js`) and its conversion into the
//!   [`ast::Program`], or syntax [`Diagnostic`]s;
//! - [`check`]: name resolution and type checking;
//! - [`format_program`]: the canonical layout, comments kept;
//! - [`SourceFile`]: renders diagnostics as `file:line:col: error[CODE]`
//!   with a snippet, or as JSON.
//!
//! # Examples
//!
//! ```
//! use symbiont_dsl::{check, parse};
//!
//! let source = r#"
//! struct Visit { age: int }
//!
//! agent seniors(visits: Stream<Visit>) -> int {
//!     return count(visits.filter(v => v.age >= 65));
//! }
//! "#;
//! let (program, diagnostics) = parse(source);
//! assert!(diagnostics.is_empty());
//! assert!(check(&program.unwrap()).is_empty());
//!
//! let (program, _) = parse("agent broken() -> int { return \"text\"; }");
//! let diagnostics = check(&program.unwrap());
//! assert_eq!(diagnostics[0].code.as_str(), "E0203");
//! ```
#![deny(unsafe_code)]

pub mod ast;
mod check;
mod diagnostic;
mod fmt;
mod lower;
mod policy;
mod query;
mod syntax;

pub use check::{CLASS_NAMES, PII_DETECTORS, Ty, check};
pub use diagnostic::{Code, Diagnostic, SourceFile};
pub use fmt::format_program;
pub use lower::{MAX_NESTING, MAX_SOURCE_BYTES, Parsed, parse, parse_bytes};
pub use policy::{
    Action, ENCRYPTION, FORCEABLE_ENCRYPTION, TIER, actions, actions_of, check_persist,
    check_policies, check_policies_with, context_attributes, context_with_lane, context_with_tiers,
    forced_lane, job_forced_lane, job_required_tiers, policies, policies_named, required_tiers,
    with_ancestors,
};
pub use query::{Rejected, entry_agents, lower_query, runnable};
pub use syntax::{language, parse_cst};

/// The body of the `parse_check` fuzz target (`fuzz/`): parses `bytes`,
/// checks and formats the program if there is one, renders every
/// diagnostic, and panics if formatting changed the program's meaning or
/// is not idempotent. Public so the fuzz target stays one line.
pub fn fuzz_parse_check(bytes: &[u8]) {
    let parsed = parse_bytes(bytes);
    let file = SourceFile::new("fuzz.symbi", parsed.text.as_str());
    let _ = file.render(&parsed.diagnostics, false);
    let Some(program) = parsed.program else {
        return;
    };
    let _ = file.render(&check(&program), false);
    let formatted = format_program(&program, Some(&parsed.text));
    let (reparsed, diagnostics) = parse(&formatted);
    let reparsed = reparsed.unwrap_or_else(|| {
        panic!("formatted program does not parse: {diagnostics:?}\n{formatted}")
    });
    assert_eq!(
        reparsed.shape(),
        program.shape(),
        "formatting changed the program:\n{formatted}"
    );
    assert_eq!(
        format_program(&reparsed, Some(&formatted)),
        formatted,
        "formatting is not idempotent"
    );
}
