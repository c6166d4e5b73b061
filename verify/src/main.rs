//! `symbi-verify`: the auditor's verifier alone. It runs the checks of
//! `symbi verify` and writes `symbi proof export`'s snarkjs files, and is
//! built without tfhe, timely, arrow or nix:
//!
//! ```sh
//! cargo install --locked --path verify      # or: cargo build -p symbiont-verify --release
//! symbi-verify BUNDLE [--key FILE] [--format human|json]
//! symbi-verify BUNDLE --snarkjs DIR [--chunk N]
//! ```
//!
//! Exit codes as `symbi`'s: 0 verified, 4 verification failed, 64 usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

const VERIFICATION_FAILED: u8 = 4;
const USAGE: u8 = 64;

/// Check a Symbiont attestation bundle offline: the signed dataset
/// commitment, every proof, every attested output, the audit checkpoint
/// and the job's entries in it. Exit 0 if everything checks, 4 otherwise,
/// naming what failed; 64 on a usage error.
#[derive(Debug, Parser)]
#[command(name = "symbi-verify", version, about, long_about)]
struct Cli {
    /// The bundle (`symbi run --bundle`).
    bundle: PathBuf,
    #[command(flatten)]
    trust: symbiont_verify::Trust,
    /// `human` (one line per check) or `json`.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Instead of verifying, write one proof's `verification_key.json`,
    /// `public.json` and `proof.json` into DIR for `snarkjs groth16
    /// verify`.
    #[arg(long, value_name = "DIR")]
    snarkjs: Option<PathBuf>,
    /// Which proof `--snarkjs` writes.
    #[arg(long, default_value_t = 0, requires = "snarkjs")]
    chunk: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // `--help` and `--version` print to stdout and succeed.
            let code = if e.use_stderr() { USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(&cli) {
        Ok(code) => ExitCode::from(code),
        Err((code, why)) => {
            eprintln!("symbi-verify: error: {why}");
            ExitCode::from(code)
        }
    }
}

fn run(cli: &Cli) -> Result<u8, (u8, String)> {
    if let Some(dir) = &cli.snarkjs {
        return export(&cli.bundle, dir, cli.chunk);
    }
    let (report, ok) = symbiont_verify::verify_command(
        &cli.bundle,
        &cli.trust,
        cli.format == Format::Json,
        &|_| Vec::new(),
    )
    .map_err(|why| (USAGE, why))?;
    print!("{report}");
    if ok {
        Ok(0)
    } else {
        eprintln!(
            "symbi-verify: {}: verification failed",
            cli.bundle.display()
        );
        Ok(VERIFICATION_FAILED)
    }
}

fn export(bundle: &Path, dir: &Path, chunk: usize) -> Result<u8, (u8, String)> {
    let (proofs, files) = symbiont_verify::snarkjs_export(bundle, chunk).map_err(|e| match e {
        symbiont_verify::ExportError::NoSuchChunk { .. } => (USAGE, e.to_string()),
        symbiont_verify::ExportError::Invalid(_) => (VERIFICATION_FAILED, e.to_string()),
    })?;
    std::fs::create_dir_all(dir)
        .map_err(|e| (1, format!("cannot create {}: {e}", dir.display())))?;
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text)
            .map_err(|e| (1, format!("cannot write {}: {e}", path.display())))?;
    }
    eprintln!(
        "symbi-verify: wrote proof {chunk} of {proofs} to {}",
        dir.display()
    );
    Ok(0)
}
