//! The auditor's verbs: `symbi verify` and `symbi proof export`, over the
//! `symbiont-verify` crate (which `symbi-verify` also runs).

use std::path::Path;

use anyhow::{Context, Result};

use crate::{CeremonyCommand, exit};
use symbiont_engine::{ceremony, program_checks};
use symbiont_verify::{Trust, verify_command};

/// `symbi verify BUNDLE`: exit 0 if every check passes, 4 if one fails: the
/// checks of `symbiont-verify` (`symbi-verify`'s), `program_checks` and the
/// ceremony's.
pub(crate) fn verify(
    path: &Path,
    trust: &Trust,
    (program, ceremony, contributions): (Option<&Path>, Option<&Path>, &[String]),
    json: bool,
) -> Result<u8> {
    let more = |b: &serde_json::Value| {
        let mut checks = program.map_or(vec![], |p| program_checks(b, p));
        checks.extend(ceremony.map_or(vec![], |d| ceremony::checks(b, d, contributions)));
        checks
    };
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

/// `symbi ceremony new|contribute`.
pub(crate) fn ceremony(command: CeremonyCommand) -> Result<u8> {
    match command {
        CeremonyCommand::New {
            file,
            dir,
            agent,
            chunk_records,
        } => {
            let m = ceremony::new(&file, agent.as_deref(), &dir, chunk_records)?;
            println!(
                "started the ceremony {} for shape {} ({} constraints, powers of tau 2^{}); next: `symbi ceremony contribute {} --phase 1 --name NAME`, once per party",
                dir.display(),
                m["shape"],
                m["constraints"],
                m["power"],
                dir.display()
            );
        }
        CeremonyCommand::Contribute { dir, phase, name } => {
            let id = ceremony::contribute(&dir, phase, &name)?;
            println!("phase {phase} contribution `{name}`: {id}");
        }
    }
    Ok(exit::OK)
}
