//! The auditor's verbs: `symbi verify` and `symbi proof export`, over the
//! `symbiont-verify` crate (which `symbi-verify` also runs).

use std::path::Path;

use anyhow::{Context, Result};

use crate::exit;

/// `symbi verify BUNDLE`: exit 0 if every check passes, 4 if one fails.
/// The checks are `symbiont-verify`'s, which `symbi-verify` also runs.
pub(crate) fn verify(path: &Path, key: Option<&Path>, json_out: bool) -> Result<u8> {
    let key = match key {
        None => None,
        Some(k) => Some(symbiont_verify::read_key(k).map_err(anyhow::Error::msg)?),
    };
    let results = symbiont_verify::verify_file(path, key.as_ref());
    print!("{}", symbiont_verify::report(path, &results, json_out));
    if results.iter().all(|c| c.failure.is_none()) {
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
