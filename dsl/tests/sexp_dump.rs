#[test]
fn dump() {
    for f in std::env::args().skip(1) {
        let _ = f;
    }
    let path = std::env::var("DUMP").unwrap_or_default();
    if path.is_empty() {
        return;
    }
    let src = std::fs::read_to_string(&path).unwrap();
    let t = symbiont_dsl::parse_cst(&src);
    println!("{}", t.root_node().to_sexp());
}
