//! A Groth16 setup the data owner cannot cheat alone: a two-phase ceremony
//! run with snarkjs (docs/ATTESTATION.md, "The ceremony").
//!
//! `symbi ceremony new` plans the statement of a program's `prove(...)`
//! fields (the planner `symbi run --bundle` uses), exports its circuit as
//! `circuit.r1cs` and starts a powers of tau. Each party then runs
//! `symbi ceremony contribute DIR --phase 1`, passing the directory on;
//! the first `--phase 2` contribution prepares phase 2 (deterministic:
//! anyone can redo it) and every later one adds to it. Soundness holds if
//! any one contributor of each phase kept their randomness secret, which
//! snarkjs draws from the OS generator and our entropy, fed on stdin (an
//! argument would show in the process list).
//!
//! `symbi run --bundle --ceremony DIR` proves with the last `.zkey`;
//! `symbi verify BUNDLE --ceremony DIR` re-exports the circuit from the
//! bundle's *signed* statement (never trusting DIR's copy), has snarkjs
//! verify every contribution of both phases against it, and requires the
//! final key's verifying key to be the bundle's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use symbiont_circuits::attest::{self, Keys, VerifyingKey};
use symbiont_circuits::ceremony::{Shape, snarkjs};
use symbiont_circuits::statement::Statement;

/// The directory's description of what the ceremony sets up.
const MANIFEST: &str = "ceremony.json";
const FORMAT: &str = "symbiont-ceremony";

/// One contribution as snarkjs' verification reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    /// 1: powers of tau; 2: the circuit's own phase.
    pub phase: u8,
    /// Its name, as the contributor gave it.
    pub name: String,
    /// Its hash (snarkjs' BLAKE2b-512, hex without spaces).
    pub hash: String,
}

/// What a ceremony sets up, from its manifest.
#[derive(Clone, Debug)]
pub struct Ceremony {
    dir: PathBuf,
    /// The statement the circuit proves (thresholds are public inputs).
    pub statement: Statement,
    /// Records per chunk.
    pub capacity: usize,
    /// The circuit shape's id ([`attest::shape_id`]).
    pub shape: String,
}

impl Ceremony {
    /// The ceremony in `dir`.
    pub fn open(dir: &Path) -> Result<Ceremony> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let m: Value =
            serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
        if m["format"] != FORMAT {
            bail!("{}: not a ceremony manifest", path.display());
        }
        let statement: Statement = serde_json::from_value(m["statement"].clone())
            .with_context(|| format!("{}: its statement", path.display()))?;
        let capacity = m["capacity"]
            .as_u64()
            .and_then(|c| usize::try_from(c).ok())
            .filter(|c| *c > 0)
            .with_context(|| format!("{}: no capacity", path.display()))?;
        let shape = attest::shape_id(&statement, capacity);
        if m["shape"] != shape.as_str() {
            bail!(
                "{}: its shape id is not that of its statement and capacity",
                path.display()
            );
        }
        Ok(Ceremony {
            dir: dir.to_path_buf(),
            statement,
            capacity,
            shape,
        })
    }

    /// The last `.zkey`: the key a job proves with.
    pub fn final_zkey(&self) -> Result<PathBuf> {
        match latest(&self.dir, "phase2_", ".zkey")? {
            Some((n, path)) if n > 0 => Ok(path),
            _ => bail!(
                "{}: no phase-2 contribution yet (`symbi ceremony contribute {} --phase 2`)",
                self.dir.display(),
                self.dir.display()
            ),
        }
    }

    /// The proving keys of the ceremony's final `.zkey`.
    pub fn keys(&self) -> Result<Keys> {
        let path = self.final_zkey()?;
        let bytes =
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        Keys::from_zkey(&bytes).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
    }
}

/// `symbi ceremony new`: plans `program`'s statement, writes the manifest
/// and `circuit.r1cs` into `dir` (which must not exist) and starts the
/// powers of tau. `capacity` overrides the records per chunk a job would
/// use (small shapes make quick ceremonies). Returns the manifest.
pub fn new(
    program: &Path,
    agent: Option<&str>,
    dir: &Path,
    capacity: Option<usize>,
) -> Result<Value> {
    let source = std::fs::read_to_string(program)
        .with_context(|| format!("cannot read {}", program.display()))?;
    let query = match symbiont_dsl::parse(&source) {
        (Some(p), d) if d.is_empty() => {
            symbiont_dsl::runnable(&p, &source, agent).map_err(|r| {
                anyhow::anyhow!(
                    "{} cannot run ({} diagnostics: `symbi check` shows them)",
                    program.display(),
                    r.diagnostics.len()
                )
            })?
        }
        _ => bail!(
            "{} does not parse (`symbi check` shows why)",
            program.display()
        ),
    };
    let planned = crate::attest::plan(&query).map_err(|why| anyhow::anyhow!("{why}"))?;
    let (statement, planned_capacity) = planned
        .ceremony_shape()
        .map_err(|why| anyhow::anyhow!("{why}"))?;
    let capacity = capacity.unwrap_or(planned_capacity);
    if capacity == 0 {
        bail!("--chunk-records must be at least 1");
    }
    let shape = Shape::of(&statement, capacity).map_err(|why| anyhow::anyhow!("{why}"))?;
    let snarkjs = snarkjs_or_fail()?;
    std::fs::create_dir(dir)
        .with_context(|| format!("cannot create {} (give a new directory)", dir.display()))?;
    let manifest = json!({
        "format": FORMAT,
        "statement": statement,
        "capacity": capacity,
        "shape": attest::shape_id(&statement, capacity),
        "constraints": shape.constraints(),
        "power": shape.power(),
        "program_sha256": crate::digest(source.as_bytes()),
    });
    crate::write_whole(&dir.join(MANIFEST), format!("{:#}\n", manifest).as_bytes())?;
    crate::write_whole(&dir.join("circuit.r1cs"), &shape.r1cs())?;
    run_snarkjs(
        &snarkjs,
        dir,
        &[
            "powersoftau",
            "new",
            "bn128",
            &shape.power().to_string(),
            "phase1_0000.ptau",
        ],
        None,
    )?;
    Ok(manifest)
}

/// `symbi ceremony contribute`: adds `name`'s contribution to `phase` of
/// the ceremony in `dir` and returns its hash (the contributor keeps it,
/// to find it later in the verified transcript).
pub fn contribute(dir: &Path, phase: u8, name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " ._-".contains(c))
    {
        bail!("--name: 1 to 64 letters, digits, spaces, `.`, `_` or `-`");
    }
    let ceremony = Ceremony::open(dir)?;
    let snarkjs = snarkjs_or_fail()?;
    let entropy = entropy()?;
    let phase2 = latest(dir, "phase2_", ".zkey")?;
    let (from, to, args): (String, String, [&str; 2]) = match (phase, phase2) {
        (1, Some(_)) => bail!(
            "{}: phase 2 has begun; phase 1 takes no more contributions",
            dir.display()
        ),
        (1, None) => {
            let (n, _) = latest(dir, "phase1_", ".ptau")?
                .with_context(|| format!("{}: no powers of tau", dir.display()))?;
            (
                format!("phase1_{n:04}.ptau"),
                format!("phase1_{:04}.ptau", n + 1),
                ["powersoftau", "contribute"],
            )
        }
        (2, phase2) => {
            let n = match phase2 {
                Some((n, _)) => n,
                None => {
                    prepare_phase2(&snarkjs, &ceremony)?;
                    0
                }
            };
            (
                format!("phase2_{n:04}.zkey"),
                format!("phase2_{:04}.zkey", n + 1),
                ["zkey", "contribute"],
            )
        }
        _ => bail!("--phase: 1 or 2"),
    };
    let out = run_snarkjs(
        &snarkjs,
        dir,
        &[args[0], args[1], &from, &to, &format!("--name={name}")],
        Some(&entropy),
    )?;
    hash_after(&out, "Contribution")
        .with_context(|| format!("snarkjs printed no contribution hash:\n{out}"))
}

/// Phase 2's start: the prepared powers of tau (`final.ptau`) and the
/// circuit's initial key (`phase2_0000.zkey`), both deterministic.
fn prepare_phase2(snarkjs: &Path, ceremony: &Ceremony) -> Result<()> {
    let dir = &ceremony.dir;
    let (n, _) = latest(dir, "phase1_", ".ptau")?
        .with_context(|| format!("{}: no powers of tau", dir.display()))?;
    if n == 0 {
        bail!(
            "{}: phase 1 has no contribution yet (`symbi ceremony contribute {} --phase 1`)",
            dir.display(),
            dir.display()
        );
    }
    run_snarkjs(
        snarkjs,
        dir,
        &[
            "powersoftau",
            "prepare",
            "phase2",
            &format!("phase1_{n:04}.ptau"),
            "final.ptau",
        ],
        None,
    )?;
    run_snarkjs(
        snarkjs,
        dir,
        &[
            "groth16",
            "setup",
            "circuit.r1cs",
            "final.ptau",
            "phase2_0000.zkey",
        ],
        None,
    )?;
    Ok(())
}

/// The transcript of the ceremony in `dir`, verified by snarkjs for the
/// circuit of `statement` over `capacity` records (exported here, not
/// read from `dir`): every contribution of both phases, and the final
/// key's verifying key. An error says which check failed.
pub fn verify(
    dir: &Path,
    statement: &Statement,
    capacity: usize,
) -> std::result::Result<(Vec<Contribution>, VerifyingKey), String> {
    let snarkjs = snarkjs_or_fail().map_err(|e| e.to_string())?;
    let ceremony = Ceremony {
        dir: dir.to_path_buf(),
        statement: statement.clone(),
        capacity,
        shape: attest::shape_id(statement, capacity),
    };
    let zkey = ceremony.final_zkey().map_err(|e| e.to_string())?;
    let shape = Shape::of(statement, capacity)?;
    let scratch = Scratch::new().map_err(|e| e.to_string())?;
    let r1cs = scratch.0.join("circuit.r1cs");
    std::fs::write(&r1cs, shape.r1cs()).map_err(|e| e.to_string())?;
    let ptau = dir.join("final.ptau");
    let phase1 = run_snarkjs(
        &snarkjs,
        dir,
        &["powersoftau", "verify", &ptau.display().to_string()],
        None,
    )
    .map_err(|e| format!("phase 1 (powers of tau) does not verify: {e}"))?;
    let phase2 = run_snarkjs(
        &snarkjs,
        dir,
        &[
            "zkey",
            "verify",
            &r1cs.display().to_string(),
            &ptau.display().to_string(),
            &zkey.display().to_string(),
        ],
        None,
    )
    .map_err(|e| format!("phase 2 does not verify for the bundle's circuit: {e}"))?;
    let mut contributions = contributions(&phase1, 1);
    contributions.extend(contributions_of_zkey(&phase2));
    let keys = ceremony.keys().map_err(|e| e.to_string())?;
    Ok((contributions, keys.vk))
}

/// `symbi verify BUNDLE --ceremony DIR [--contribution HASH]...`: the
/// ceremony in `dir` verifies for the circuit of the bundle's signed
/// statement and chunk size, its final verifying key is the bundle's, and
/// every `expected` contribution hash (the auditor's own) is in it.
pub fn checks(bundle: &Value, dir: &Path, expected: &[String]) -> Vec<symbiont_verify::Check> {
    let check = |what: String, failure: Option<String>| symbiont_verify::Check { what, failure };
    let statement: Result<Statement, _> = serde_json::from_value(bundle["statement"].clone());
    let capacity = bundle
        .pointer("/dataset/chunk_records")
        .and_then(Value::as_u64)
        .and_then(|c| usize::try_from(c).ok());
    let (Ok(statement), Some(capacity)) = (statement, capacity) else {
        return vec![check(
            "the ceremony".into(),
            Some("the bundle has no statement or chunk size to check it against".into()),
        )];
    };
    let (contributions, vk) = match verify(dir, &statement, capacity) {
        Ok(v) => v,
        Err(why) => {
            return vec![check(
                format!("the ceremony in {}", dir.display()),
                Some(why),
            )];
        }
    };
    let mut out = Vec::new();
    for c in &contributions {
        out.push(check(
            format!(
                "ceremony phase {} contribution `{}` ({}...) verified",
                c.phase,
                c.name,
                &c.hash[..16]
            ),
            None,
        ));
    }
    for phase in [1, 2] {
        if !contributions.iter().any(|c| c.phase == phase) {
            out.push(check(
                format!("ceremony phase {phase}"),
                Some("it has no contribution".into()),
            ));
        }
    }
    let ours = attest::hex(&symbiont_circuits::attest::encoding::vk_bytes(&vk));
    out.push(check(
        "the bundle's verifying key is the ceremony's final key".into(),
        (bundle.pointer("/verifying_key/key").and_then(Value::as_str) != Some(ours.as_str()))
            .then(|| "the bundle was proved under another key than the ceremony made".into()),
    ));
    for hash in expected {
        let hash: String = hash
            .split_whitespace()
            .collect::<String>()
            .to_ascii_lowercase();
        out.push(check(
            format!(
                "contribution {}... is in the ceremony",
                hash.get(..16).unwrap_or(&hash)
            ),
            (!contributions.iter().any(|c| c.hash == hash))
                .then(|| "no verified contribution has this hash".into()),
        ));
    }
    out
}

/// Phase-1 contributions in `snarkjs powersoftau verify`'s report: a
/// `Contribution #N: NAME` line, then its hashes; the response hash is the
/// one its contributor was shown.
fn contributions(report: &str, phase: u8) -> Vec<Contribution> {
    let lines: Vec<&str> = report.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = line.split("Contribution #").nth(1) else {
            continue;
        };
        let name = name.split_once(':').map(|(_, n)| n.trim()).unwrap_or("");
        let rest = lines[i + 1..].join("\n");
        let until_next = rest.split("Contribution #").next().unwrap_or("");
        if let Some(hash) = hash_after(until_next, "Response Hash") {
            out.push(Contribution {
                phase,
                name: name.to_string(),
                hash,
            });
        }
    }
    out
}

/// Phase-2 contributions in `snarkjs zkey verify`'s report:
/// `contribution #N NAME:` and the hash below it.
fn contributions_of_zkey(report: &str) -> Vec<Contribution> {
    let lines: Vec<&str> = report.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(rest) = line.split("contribution #").nth(1) else {
            continue;
        };
        let name = rest
            .split_once(' ')
            .map(|(_, n)| n.trim().trim_end_matches(':'))
            .unwrap_or("");
        if let Some(hash) = hex_block(&lines[i + 1..]) {
            out.push(Contribution {
                phase: 2,
                name: name.to_string(),
                hash,
            });
        }
    }
    out
}

/// The hex block printed after the first line containing `label`.
fn hash_after(report: &str, label: &str) -> Option<String> {
    let lines: Vec<&str> = report.lines().collect();
    let at = lines.iter().position(|l| l.contains(label))?;
    hex_block(&lines[at + 1..])
}

/// snarkjs prints a 64-byte hash as four indented lines of four 8-digit
/// hex groups.
fn hex_block(lines: &[&str]) -> Option<String> {
    let hash: String = lines
        .iter()
        .take(4)
        .map(|l| l.split_whitespace().collect::<String>())
        .collect();
    (hash.len() == 128 && hash.chars().all(|c| c.is_ascii_hexdigit())).then_some(hash)
}

/// The highest-numbered `PREFIXNNNN SUFFIX` file in `dir`.
fn latest(dir: &Path, prefix: &str, suffix: &str) -> Result<Option<(u32, PathBuf)>> {
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix))
            .and_then(|n| n.strip_suffix(suffix))
            .filter(|n| n.len() == 4)
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    Ok(best)
}

fn snarkjs_or_fail() -> Result<PathBuf> {
    snarkjs().context(
        "snarkjs is not installed: `scripts/setup` installs it (node and npm needed), or set SNARKJS to its path",
    )
}

/// 64 bytes from the OS generator, in hex: what snarkjs asks for on stdin.
fn entropy() -> Result<String> {
    let mut bytes = [0u8; 64];
    getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("the OS random source: {e}"))?;
    Ok(symbiont_verify::hex(&bytes))
}

/// Runs snarkjs in `dir`, `stdin` fed to it, and returns what it printed
/// (colours removed); a failure carries its last lines.
fn run_snarkjs(snarkjs: &Path, dir: &Path, args: &[&str], stdin: Option<&str>) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new(snarkjs)
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", snarkjs.display()))?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(format!("{text}\n").as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let text = plain(&[out.stdout, out.stderr].concat());
    // snarkjs reports some failures (a contribution that does not verify)
    // with exit status 0 and an `[ERROR]` line.
    if !out.status.success() || text.contains("[ERROR]") || text.contains("INVALID") {
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let mut why: Vec<&str> = lines
            .iter()
            .filter(|l| l.contains("ERROR") || l.contains("INVALID"))
            .copied()
            .collect();
        if why.is_empty() {
            why = lines.iter().rev().take(2).rev().copied().collect();
        }
        bail!("snarkjs {}: {}", args[..2].join(" "), why.join("; "));
    }
    Ok(text)
}

/// Text without ANSI colour sequences.
fn plain(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A private scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt;
        let nonce = getrandom::u64().map_err(|e| anyhow::anyhow!("the OS random source: {e}"))?;
        let dir = std::env::temp_dir().join(format!("symbi-ceremony-{nonce:016x}"));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_read_from_snarkjs_reports() {
        let block = "\t\t24c3b570 cd603a41 0faa6d28 ab761a60\n\t\t34fe2a46 025535b3 018e51b8 fed3d895\n\t\t7fedebca 9e649225 d3bcd457 57a440bc\n\t\tf3ec8921 8c112487 1758cf2e 0105b527";
        let hash: String = block.split_whitespace().collect();
        let report = format!(
            "[INFO]  snarkJS: Contribution #2: auditor\n[INFO]  snarkJS: Next Challenge: \n{block}\n[INFO]  snarkJS: Response Hash:\n{block}\n[INFO]  snarkJS: Contribution #1: owner\n[INFO]  snarkJS: Response Hash:\n{block}\n"
        );
        let found = contributions(&report, 1);
        assert_eq!(found.len(), 2);
        assert_eq!(
            (found[0].name.as_str(), found[0].hash.as_str()),
            ("auditor", hash.as_str())
        );
        assert_eq!(found[1].name, "owner");
        let zkey = format!("[INFO]  snarkJS: contribution #1 owner:\n{block}\n");
        assert_eq!(contributions_of_zkey(&zkey)[0].name, "owner");
        assert_eq!(plain(b"\x1b[32;22m[INFO]\x1b[39;1m x"), "[INFO] x");
        assert!(hex_block(&["\t\tnot hex"]).is_none());
    }
}
