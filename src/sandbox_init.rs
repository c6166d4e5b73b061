//! `symbi-sandbox-init`: the sandboxes' init (tier 1), a small binary so
//! that starting a sandbox does not load all of `symbi`. `symbi` runs it
//! from beside itself, and falls back to re-executing itself.
#![forbid(unsafe_code)]

fn main() {
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(symbiont_sandbox::INIT_ARG))
    {
        symbiont_sandbox::init_main();
    }
    eprintln!("symbi-sandbox-init: started by `symbi sandbox run`, not by hand");
    std::process::exit(64);
}
