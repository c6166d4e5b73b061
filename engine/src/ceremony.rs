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
//! `symbi verify BUNDLE --ceremony DIR --contribution ID...` re-exports
//! the circuit from the bundle's *signed* statement (never trusting DIR's
//! copy), has snarkjs verify private copies of the final powers of tau and
//! key against it, reads the contributions from those same bytes (never
//! from snarkjs' printed report, where a contribution's name could forge
//! lines), and requires the final verifying key to be the bundle's and a
//! contribution the auditor names in each phase.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use symbiont_circuits::attest::{self, Keys, VerifyingKey};
use symbiont_circuits::ceremony::{self, Shape, snarkjs};
use symbiont_circuits::statement::Statement;

/// The directory's description of what the ceremony sets up.
const MANIFEST: &str = "ceremony.json";
const FORMAT: &str = "symbiont-ceremony";

/// One contribution as snarkjs' verification reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Contribution {
    /// 1: powers of tau; 2: the circuit's own phase.
    pub phase: u8,
    /// Its name, as the contributor gave it (a label, not evidence).
    pub name: String,
    /// Its id: SHA-256 of its public part as the verified file records
    /// it ([`symbiont_circuits::ceremony::Recorded`]).
    pub id: String,
}

/// What a ceremony sets up, from its manifest.
#[derive(Clone, Debug)]
pub struct Ceremony {
    dir: PathBuf,
    /// The statement the circuit proves (thresholds are public inputs).
    pub statement: Statement,
    /// Records per chunk.
    pub capacity: usize,
    /// The circuit shape's id ([`attest::shape_id_for`] its circuit).
    pub shape: String,
    /// The circuit: the statement's own, or the general circuit for a
    /// ceremony held before the interval circuit existed.
    pub kind: attest::CircuitKind,
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
        let shape = m["shape"].as_str().unwrap_or("").to_owned();
        let Some(kind) = attest::kind_of_shape(&statement, capacity, &shape) else {
            bail!(
                "{}: its shape id is not that of its statement and capacity",
                path.display()
            );
        };
        Ok(Ceremony {
            dir: dir.to_path_buf(),
            statement,
            capacity,
            shape,
            kind,
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
/// the ceremony in `dir` and returns its id, read back from the file
/// snarkjs wrote (the contributor keeps it, to find it later in the
/// verified ceremony with `symbi verify --contribution`).
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
            if n >= 9999 {
                bail!("{}: phase 1 holds its last contribution", dir.display());
            }
            (
                format!("phase1_{n:04}.ptau"),
                format!("phase1_{:04}.ptau", n + 1),
                ["powersoftau", "contribute"],
            )
        }
        (2, phase2) => {
            let n = match phase2 {
                Some((n, _)) if n >= 9999 => {
                    bail!("{}: phase 2 holds its last contribution", dir.display())
                }
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
    // snarkjs reads and writes in a private directory, and the id comes
    // from the bytes it wrote there: nothing in `dir` can be swapped in
    // between. The result then goes into `dir` as a new file.
    fresh(&dir.join(&to))?;
    let scratch = Scratch::new()?;
    let input = std::fs::read(dir.join(&from))
        .with_context(|| format!("cannot read {}", dir.join(&from).display()))?;
    std::fs::write(scratch.0.join(&from), input)?;
    run_snarkjs(
        &snarkjs,
        &scratch.0,
        &[args[0], args[1], &from, &to, &format!("--name={name}")],
        Some(&entropy),
    )?;
    let written = std::fs::read(scratch.0.join(&to))?;
    let recorded = if phase == 1 {
        ceremony::ptau_contributions(&written)
    } else {
        ceremony::zkey_contributions(&written)
    };
    let id = recorded
        .map_err(|why| anyhow::anyhow!("{to}: {why}"))?
        .pop()
        .map(|c| c.id)
        .with_context(|| format!("{to} records no contribution"))?;
    create_new(&dir.join(&to), &written)?;
    Ok(id)
}

/// Writes a file that must not exist (a link there is not followed).
fn create_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .with_context(|| format!("cannot create {} (it must not exist)", path.display()))
}

/// Refuses early when `path` exists (a contribution never overwrites a
/// file); [`create_new`] enforces it when the file is written.
fn fresh(path: &Path) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Ok(_) => bail!(
            "{} exists: a contribution never overwrites a file",
            path.display()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot check {}", path.display())),
    }
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
    fresh(&dir.join("final.ptau"))?;
    fresh(&dir.join("phase2_0000.zkey"))?;
    // In a private directory: what is read and written there, nobody else
    // can swap or link; the results go into the ceremony as new files.
    let scratch = Scratch::new()?;
    let copy_in = |name: &str| -> Result<()> {
        let bytes = std::fs::read(dir.join(name))
            .with_context(|| format!("cannot read {}", dir.join(name).display()))?;
        std::fs::write(scratch.0.join(name), bytes).map_err(Into::into)
    };
    copy_in(&format!("phase1_{n:04}.ptau"))?;
    copy_in("circuit.r1cs")?;
    run_snarkjs(
        snarkjs,
        &scratch.0,
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
        &scratch.0,
        &[
            "groth16",
            "setup",
            "circuit.r1cs",
            "final.ptau",
            "phase2_0000.zkey",
        ],
        None,
    )?;
    for name in ["final.ptau", "phase2_0000.zkey"] {
        let bytes = std::fs::read(scratch.0.join(name))?;
        create_new(&dir.join(name), &bytes)?;
    }
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
    kind: attest::CircuitKind,
) -> std::result::Result<(Vec<Contribution>, VerifyingKey), String> {
    let snarkjs = snarkjs_or_fail().map_err(|e| e.to_string())?;
    let ceremony = Ceremony {
        dir: dir.to_path_buf(),
        statement: statement.clone(),
        capacity,
        shape: attest::shape_id_for(kind, statement, capacity),
        kind,
    };
    let zkey = ceremony.final_zkey().map_err(|e| e.to_string())?;
    let shape = Shape::of_kind(kind, statement, capacity)?;
    // snarkjs checks copies in a private directory, and the contributions
    // and the key are read from those same bytes: nothing can change
    // between the check and the read.
    let scratch = Scratch::new().map_err(|e| e.to_string())?;
    let copy = |from: &Path, name: &str| -> std::result::Result<(PathBuf, Vec<u8>), String> {
        let bytes =
            std::fs::read(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
        let to = scratch.0.join(name);
        std::fs::write(&to, &bytes).map_err(|e| e.to_string())?;
        Ok((to, bytes))
    };
    let (ptau, ptau_bytes) = copy(&dir.join("final.ptau"), "final.ptau")?;
    let (zkey, zkey_bytes) = copy(&zkey, "final.zkey")?;
    let r1cs = scratch.0.join("circuit.r1cs");
    std::fs::write(&r1cs, shape.r1cs()).map_err(|e| e.to_string())?;
    let arg = |p: &Path| p.display().to_string();
    run_snarkjs(
        &snarkjs,
        &scratch.0,
        &["powersoftau", "verify", &arg(&ptau)],
        None,
    )
    .map_err(|e| format!("phase 1 (powers of tau) does not verify: {e}"))?;
    run_snarkjs(
        &snarkjs,
        &scratch.0,
        &["zkey", "verify", &arg(&r1cs), &arg(&ptau), &arg(&zkey)],
        None,
    )
    .map_err(|e| format!("phase 2 does not verify for the bundle's circuit: {e}"))?;
    let mut contributions = Vec::new();
    for (phase, recorded) in [
        (1, ceremony::ptau_contributions(&ptau_bytes)),
        (2, ceremony::zkey_contributions(&zkey_bytes)),
    ] {
        for r in recorded.map_err(|why| format!("phase {phase}: {why}"))? {
            contributions.push(Contribution {
                phase,
                name: r.name,
                id: r.id,
            });
        }
    }
    let keys = Keys::from_zkey(&zkey_bytes)?;
    shape.admits(&keys.pk)?;
    Ok((contributions, keys.vk))
}

/// `symbi verify BUNDLE --ceremony DIR --contribution ID...`: the
/// ceremony in `dir` verifies for the circuit of the bundle's signed
/// statement and chunk size, its final verifying key is the bundle's,
/// every `expected` contribution id (the auditor's own) is in it, and each
/// phase holds one of them.
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
    // The circuit the bundle names, if it may prove the statement (a
    // ceremony held for the general circuit before the interval circuit
    // existed); the statement's own otherwise.
    let kind = bundle
        .pointer("/verifying_key/shape")
        .and_then(Value::as_str)
        .and_then(|s| attest::kind_of_shape(&statement, capacity, s))
        .unwrap_or_else(|| attest::CircuitKind::of(&statement));
    let (contributions, vk) = match verify(dir, &statement, capacity, kind) {
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
                &c.id[..16]
            ),
            None,
        ));
    }
    let ours = attest::hex(&symbiont_circuits::attest::encoding::vk_bytes(&vk));
    out.push(check(
        "the bundle's verifying key is the ceremony's final key".into(),
        (bundle.pointer("/verifying_key/key").and_then(Value::as_str) != Some(ours.as_str()))
            .then(|| "the bundle was proved under another key than the ceremony made".into()),
    ));
    let expected: Vec<String> = expected
        .iter()
        .map(|e| e.trim().to_ascii_lowercase())
        .collect();
    for id in &expected {
        out.push(check(
            format!(
                "contribution {}... is in the ceremony",
                id.get(..16).unwrap_or(id)
            ),
            (!contributions.iter().any(|c| c.id == *id))
                .then(|| "no verified contribution has this id".into()),
        ));
    }
    // Soundness needs an honest contributor in each phase: whoever alone
    // made phase 1 knows τ, α and β and can forge whatever δ is.
    for phase in [1, 2] {
        let found = contributions
            .iter()
            .any(|c| c.phase == phase && expected.contains(&c.id));
        out.push(check(
            format!("ceremony phase {phase} holds a contribution you named"),
            (!found).then(|| {
                if expected.is_empty() {
                    "name your contributions (--contribution ID, one per phase): without them, a ceremony its owner held alone verifies too".into()
                } else {
                    format!("none of the --contribution ids is in phase {phase}")
                }
            }),
        ));
    }
    out
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
            .filter(|n| n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()))
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

/// snarkjs, as an absolute path: it runs with the ceremony's directory as
/// its working directory, which must not be able to supply it.
fn snarkjs_or_fail() -> Result<PathBuf> {
    let path = snarkjs().context(
        "snarkjs is not installed: `scripts/setup` installs it (node and npm needed), or set SNARKJS to its path",
    )?;
    std::fs::canonicalize(&path).with_context(|| format!("snarkjs at {}", path.display()))
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
    fn only_four_digit_numbers_count_and_colours_go() {
        let dir = std::env::temp_dir().join(format!("symbi-latest-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in [
            "phase2_0001.zkey",
            "phase2_+002.zkey",
            "phase2_10000.zkey",
            "phase2_0003.zkey.partial",
        ] {
            std::fs::write(dir.join(name), b"").unwrap();
        }
        let (n, path) = latest(&dir, "phase2_", ".zkey").unwrap().unwrap();
        assert_eq!(
            (n, path.file_name().unwrap().to_str().unwrap()),
            (1, "phase2_0001.zkey")
        );
        assert!(fresh(&dir.join("phase2_0001.zkey")).is_err());
        assert!(fresh(&dir.join("phase2_0002.zkey")).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(plain(b"\x1b[32;22m[INFO]\x1b[39;1m x"), "[INFO] x");
    }
}
