//! The auditor's verbs: `symbi verify` and `symbi proof export`, over the
//! `symbiont-verify` crate (which `symbi-verify` also runs).

use std::path::Path;

use anyhow::{Context, Result};

use crate::exit;
use symbiont_engine::program_checks;
use symbiont_verify::{Trust, verify_command};

/// `symbi verify BUNDLE`: exit 0 if every check passes, 4 if one fails: the
/// checks of `symbiont-verify` (`symbi-verify`'s), and `program_checks`.
pub(crate) fn verify(path: &Path, trust: &Trust, program: Option<&Path>, json: bool) -> Result<u8> {
    let more = |b: &serde_json::Value| program.map_or(vec![], |p| program_checks(b, p));
    let (report, ok) = verify_command(path, trust, json, &more).map_err(anyhow::Error::msg)?;
    print!("{report}");
    if ok {
        Ok(exit::OK)
    } else {
        eprintln!("symbi: {}: verification failed", path.display());
        Ok(exit::VERIFICATION_FAILED)
    }
}

/// `symbi proof export BUNDLE --format snarkjs --out DIR [--chunk N]`.
pub(crate) fn export(path: &Path, out: &Path, chunk: usize) -> Result<u8> {
    let (proofs, files) = match symbiont_verify::snarkjs_export(path, chunk) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("symbi: error: {e}");
            return Ok(match e {
                symbiont_verify::ExportError::NoSuchChunk { .. } => exit::USAGE,
                symbiont_verify::ExportError::Invalid(_) => exit::VERIFICATION_FAILED,
            });
        }
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    for (name, text) in files {
        symbiont_engine::write_whole(&out.join(name), text.as_bytes())?;
    }
    eprintln!(
        "symbi: wrote proof {chunk} of {proofs} to {} (snarkjs groth16 verify verification_key.json public.json proof.json)",
        out.display()
    );
    Ok(exit::OK)
}
