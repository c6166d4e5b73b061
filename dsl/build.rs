//! Compiles the generated tree-sitter parser (`tree-sitter-symbiont/src/`).

fn main() {
    let src = std::path::Path::new("tree-sitter-symbiont/src");
    let parser = src.join("parser.c");
    cc::Build::new()
        .include(src)
        .file(&parser)
        .std("c11")
        .warnings(false)
        .compile("tree-sitter-symbiont");
    println!("cargo:rerun-if-changed={}", parser.display());
    println!(
        "cargo:rerun-if-changed={}",
        src.join("tree_sitter/parser.h").display()
    );
}
