//! The binding to the generated tree-sitter parser.

use tree_sitter::{Language, Parser, Tree};

#[allow(unsafe_code)]
mod ffi {
    unsafe extern "C" {
        fn tree_sitter_symbiont() -> *const ();
    }

    // SAFETY: `tree_sitter_symbiont` is the language function of the parser
    // generated from `tree-sitter-symbiont/grammar.js`, compiled and linked
    // by `build.rs`; it takes no arguments and returns a pointer to a static
    // `TSLanguage`, which is what `LanguageFn` requires.
    pub(super) const LANGUAGE: tree_sitter_language::LanguageFn =
        unsafe { tree_sitter_language::LanguageFn::from_raw(tree_sitter_symbiont) };
}

/// The tree-sitter language of Symbiont programs.
pub fn language() -> Language {
    ffi::LANGUAGE.into()
}

/// Parses `source` into a concrete syntax tree (with error nodes where the
/// source is not a program).
pub fn parse_cst(source: &str) -> Tree {
    let mut parser = Parser::new();
    parser
        .set_language(&language())
        .expect("the generated parser's ABI is one the tree-sitter runtime accepts");
    parser
        .parse(source, None)
        .expect("parsing without a timeout or cancellation always yields a tree")
}
