//! The auditor's side of attestation: checks a `symbi run --bundle`
//! bundle offline, and turns one of its proofs into snarkjs' files.
//!
//! This crate builds without tfhe, timely, arrow or nix (`cargo tree -p
//! symbiont-verify` shows none), so an auditor can build just it and its
//! `symbi-verify` binary: `cargo install --path verify`. `symbi verify`
//! runs the same [`checks`]. `docs/ATTESTATION.md` describes the bundle
//! field by field and what each check means.
//!
//! ```no_run
//! let bundle = symbiont_verify::read_bundle(std::path::Path::new("job.bundle.json")).unwrap();
//! let owner = symbiont_verify::read_key(std::path::Path::new("audit_ed25519.pub")).unwrap();
//! let checks = symbiont_verify::checks(&bundle, Some(&owner));
//! assert!(checks.iter().all(|c| c.failure.is_none()));
//! ```
#![forbid(unsafe_code)]

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sha2::Digest;
use symbiont_audit::{AuditVerifyingKey, EntryKind, merkle};
use symbiont_circuits::attest::{self, Chunk, encoding};
use symbiont_circuits::statement::{Comparison, Kind, Op, Statement};
use symbiont_ir::AggKind;

/// The bundle format's name and version.
pub const FORMAT: &str = "symbiont-attestation-bundle";
/// The bundle format version this crate reads and `symbi run` writes.
pub const VERSION: u64 = 1;

/// The lower-case hex SHA-256 of `bytes` (how a bundle names a key).
pub fn digest(bytes: &[u8]) -> String {
    hex(&sha2::Sha256::digest(bytes))
}

/// `bytes` in lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The signer's public key in `path` (an `audit_ed25519.pub` file), for
/// pinning; the error names the file.
pub fn read_key(path: &Path) -> Result<AuditVerifyingKey, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    AuditVerifyingKey::parse(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
}

/// How a group key becomes the `u32` the commitment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyCode {
    /// A string: the first four bytes of its SHA-256, big-endian.
    Text,
    /// An `int` in 0..2^32 (or a `bool`): itself.
    Int,
}

impl KeyCode {
    /// Its name in a bundle's `grouping.encoding`.
    pub fn name(self) -> &'static str {
        match self {
            KeyCode::Text => "sha256-u32",
            KeyCode::Int => "int",
        }
    }

    /// The code named `name`, if this crate knows it.
    pub fn from_name(name: &str) -> Option<KeyCode> {
        [KeyCode::Text, KeyCode::Int]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The code of a key as the job's result shows it.
    pub fn of(self, key: &Value) -> Option<u32> {
        match (self, key) {
            (KeyCode::Text, Value::String(s)) => Some(text_code(s)),
            (KeyCode::Int, Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            (KeyCode::Int, Value::Bool(b)) => Some(u32::from(*b)),
            _ => None,
        }
    }
}

/// A string key's code: the first four bytes of its SHA-256.
pub fn text_code(s: &str) -> u32 {
    let digest = sha2::Sha256::digest(s.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// What the owner signs: the dataset, its record count, its chunks'
/// commitments and the dataset commitment.
pub fn note_body(
    dataset: &str,
    records: u64,
    chunks: &[symbiont_circuits::Fr],
    commitment: &symbiont_circuits::Fr,
) -> String {
    let mut body = format!(
        "symbiont dataset commitment v1\ndataset {}\nrecords {records}\nchunks {}\n",
        dataset.replace('\n', " "),
        chunks.len()
    );
    for c in chunks {
        body.push_str(&format!("chunk {}\n", encoding::fr_text(c)));
    }
    body.push_str(&format!("commitment {}\n", encoding::fr_text(commitment)));
    body
}

/// An attested output's value from the statement's totals: `kind`
/// (count, sum or avg) of the aggregate whose count is at `output` (its
/// sum follows it).
pub fn value_of(kind: AggKind, output: usize, totals: &[u64]) -> Value {
    let count = totals[output];
    match kind {
        AggKind::Count => json!(count),
        AggKind::Sum => json!(totals[output + 1]),
        _ if count == 0 => Value::Null,
        _ => json!(totals[output + 1] as f64 / count as f64),
    }
}

/// Equal as numbers (an `avg` is a float; counts and sums are integers).
pub fn same(a: &Value, b: &Value) -> bool {
    match (a.as_u64(), b.as_u64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => a == b,
        },
    }
}

/// One check of a bundle, and why it failed if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    /// What was checked, in words.
    pub what: String,
    /// Why it failed; `None` if it passed.
    pub failure: Option<String>,
}

fn decode_hex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("not hex".into());
    }
    (0..text.len() / 2)
        .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn field<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    path.split('.')
        .try_fold(v, |v, k| v.get(k))
        .ok_or_else(|| format!("the bundle has no `{path}`"))
}

fn text<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    field(v, path)?
        .as_str()
        .ok_or_else(|| format!("`{path}` is not a string"))
}

/// Everything a bundle claims, decoded (or the first thing that does not
/// decode). Nothing in it is checked yet: [`checks`] does that.
#[derive(Debug)]
pub struct Decoded {
    /// The key that signed the commitment and the audit checkpoint.
    pub signer: AuditVerifyingKey,
    /// The dataset's id.
    pub dataset: String,
    /// Its record count.
    pub records: u64,
    /// Each chunk's commitment.
    pub chunks: Vec<symbiont_circuits::Fr>,
    /// The dataset commitment.
    pub commitment: symbiont_circuits::Fr,
    /// The signed note over the commitment.
    pub note: String,
    /// The statement the proofs are of.
    pub statement: Statement,
    /// One proof per chunk.
    pub proofs: Vec<Chunk>,
    /// The Groth16 verifying key.
    pub vk: attest::VerifyingKey,
    /// The SHA-256 the bundle gives for it.
    pub vk_sha256: String,
    /// Its bytes.
    pub vk_bytes: Vec<u8>,
    /// The circuit shape of the statement, recomputed.
    pub shape: String,
}

/// Decodes a bundle's claims (the first field that does not decode is
/// the error).
pub fn decode(bundle: &Value) -> Result<Decoded, String> {
    if text(bundle, "format")? != FORMAT {
        return Err(format!("not a {FORMAT}"));
    }
    let version = field(bundle, "version")?.as_u64();
    if version != Some(VERSION) {
        return Err(format!(
            "version {version:?}: this symbi reads version {VERSION}"
        ));
    }
    let signer =
        AuditVerifyingKey::parse(text(bundle, "signer")?).map_err(|e| format!("`signer`: {e}"))?;
    let chunks = field(bundle, "dataset.chunks")?
        .as_array()
        .ok_or("`dataset.chunks` is not a list")?
        .iter()
        .enumerate()
        .map(|(i, c)| {
            c.as_str()
                .ok_or_else(|| format!("`dataset.chunks[{i}]` is not a string"))
                .and_then(|t| {
                    encoding::fr_from(t).map_err(|e| format!("`dataset.chunks[{i}]`: {e}"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let commitment = encoding::fr_from(text(bundle, "dataset.commitment")?)
        .map_err(|e| format!("`dataset.commitment`: {e}"))?;
    let statement: Statement = serde_json::from_value(field(bundle, "statement")?.clone())
        .map_err(|e| format!("`statement`: {e}"))?;
    statement
        .check()
        .map_err(|e| format!("`statement` is not well formed: {e}"))?;
    let proofs = field(bundle, "proofs")?
        .as_array()
        .ok_or("`proofs` is not a list")?
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let at = |what: &str| format!("`proofs[{i}].{what}`");
            let bytes = decode_hex(p.get("proof").and_then(Value::as_str).unwrap_or(""))
                .map_err(|e| format!("{}: {e}", at("proof")))?;
            let proof = encoding::proof_from(&bytes)
                .map_err(|e| format!("{} does not decode: {e}", at("proof")))?;
            let outputs: Vec<u64> =
                serde_json::from_value(p.get("outputs").cloned().unwrap_or_default())
                    .map_err(|e| format!("{}: {e}", at("outputs")))?;
            Ok(Chunk {
                commitment: chunks.get(i).copied().unwrap_or_default(),
                records: p
                    .get("records")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| at("records"))?,
                outputs,
                proof,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let vk_bytes = decode_hex(text(bundle, "verifying_key.key")?)
        .map_err(|e| format!("`verifying_key.key`: {e}"))?;
    let vk = encoding::vk_from(&vk_bytes)
        .map_err(|e| format!("the verifying key does not decode: {e}"))?;
    Ok(Decoded {
        signer,
        dataset: text(bundle, "dataset.id")?.to_string(),
        records: field(bundle, "dataset.records")?
            .as_u64()
            .ok_or("`dataset.records` is not a count")?,
        chunks,
        commitment,
        note: text(bundle, "dataset.signed")?.to_string(),
        proofs,
        vk,
        vk_sha256: text(bundle, "verifying_key.sha256")?.to_string(),
        vk_bytes,
        shape: shape(
            bundle,
            &statement,
            field(bundle, "dataset.chunk_records")?
                .as_u64()
                .ok_or("`dataset.chunk_records` is not a count")? as usize,
        ),
        statement,
    })
}

/// The circuit shape of `statement` over chunks of `capacity` records,
/// recomputed: its own circuit's ([`attest::shape_id`]), or for a run or
/// interval statement a slower circuit's that also proves it
/// ([`attest::shape_ids`]) if the bundle names that one (bundles made
/// before the faster circuit existed, and groupings, which are committed
/// for the general circuit). What the bundle names is used only when it is
/// one of these.
fn shape(bundle: &Value, statement: &Statement, capacity: usize) -> String {
    let named = bundle
        .pointer("/verifying_key/shape")
        .and_then(Value::as_str);
    let ids = attest::shape_ids(statement, capacity);
    match named {
        Some(named) if ids.iter().any(|id| id == named) => named.to_owned(),
        _ => ids.into_iter().next().expect("a statement has a shape"),
    }
}

/// Runs every check of `bundle`; `key` pins the signer. The bundle
/// verifies if no check has a failure.
pub fn checks(bundle: &Value, key: Option<&AuditVerifyingKey>) -> Vec<Check> {
    let mut out = Vec::new();
    let mut check = |what: &str, result: Result<(), String>| {
        out.push(Check {
            what: what.into(),
            failure: result.err(),
        })
    };
    let d = match decode(bundle) {
        Ok(d) => d,
        Err(why) => {
            check("the bundle decodes", Err(why));
            return out;
        }
    };
    check("the bundle decodes", Ok(()));
    check(
        "the bundle holds only its own fields",
        unknown_fields(bundle),
    );
    // Trust comes from outside the bundle: its own key only shows that
    // it is consistent, not who made it.
    match key {
        Some(k) => check(
            "the signer is the given key",
            if *k == d.signer {
                Ok(())
            } else {
                Err(format!(
                    "signed by {}, not by {}",
                    d.signer.to_note_key(),
                    k.to_note_key()
                ))
            },
        ),
        None => check(
            PINNED,
            Err("signer not pinned: give the owner's public key (--key OWNER.pub); the key inside the bundle shows it is consistent, not who made it".into()),
        ),
    }
    // The owner's signature over the dataset commitment.
    let expected = note_body(&d.dataset, d.records, &d.chunks, &d.commitment);
    check(
        "the dataset commitment's signature",
        match d.signer.verify_note(&d.note) {
            Err(e) => Err(format!("the signed commitment does not verify: {e}")),
            Ok(body) if body != expected => Err(
                "the signed commitment is not this bundle's dataset, records, chunks and commitment"
                    .into(),
            ),
            Ok(_) => Ok(()),
        },
    );
    check(
        "the dataset commitment covers the chunks",
        if symbiont_circuits::commit::dataset(&d.chunks) == d.commitment {
            Ok(())
        } else {
            Err("`dataset.commitment` is not the commitment of `dataset.chunks`".into())
        },
    );
    check(
        "the verifying key's hash",
        if digest(&d.vk_bytes) == d.vk_sha256 {
            Ok(())
        } else {
            Err("`verifying_key.sha256` is not the key's SHA-256".into())
        },
    );
    check(
        "the verifying key's circuit shape",
        match bundle
            .pointer("/verifying_key/shape")
            .and_then(Value::as_str)
        {
            Some(shape) if shape == d.shape => Ok(()),
            Some(_) => {
                Err("`verifying_key.shape` is not the shape of the bundle's statement".into())
            }
            None => Err("the bundle has no `verifying_key.shape`".into()),
        },
    );
    check(
        "a proof per chunk",
        if d.proofs.len() == d.chunks.len() {
            Ok(())
        } else {
            Err(format!(
                "{} proofs for {} chunks",
                d.proofs.len(),
                d.chunks.len()
            ))
        },
    );
    let records: u64 = d.proofs.iter().map(|p| p.records).sum();
    check(
        "the chunks hold the dataset's records",
        if records == d.records {
            Ok(())
        } else {
            Err(format!(
                "the proofs cover {records} records, the dataset has {}",
                d.records
            ))
        },
    );
    let totals = match attest::verify(&d.vk, &d.statement, &d.proofs) {
        Ok((_, totals)) => {
            check("every chunk's proof", Ok(()));
            Some(totals)
        }
        Err((i, why)) => {
            check(
                "every chunk's proof",
                Err(format!("proof {i} (chunk {i}): {why}")),
            );
            None
        }
    };
    if let Some(totals) = totals {
        let attested = field(bundle, "attested")
            .ok()
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if attested.is_empty() {
            check(
                "the attested outputs",
                Err("the bundle attests no output".into()),
            );
        }
        for a in &attested {
            let name = a
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_string();
            let kind = match a.get("aggregate").and_then(Value::as_str) {
                Some("count") => Some(AggKind::Count),
                Some("sum") => Some(AggKind::Sum),
                Some("avg") => Some(AggKind::Avg),
                _ => None,
            };
            let output = a.get("output").and_then(Value::as_u64).map(|o| o as usize);
            let group = a.get("group").and_then(Value::as_u64).map(|g| g as usize);
            let label = match group {
                Some(g) => format!("output `{name}` of group {g} ({})", group_key(bundle, g)),
                None => format!("output `{name}`"),
            };
            let result = match (kind, output) {
                (Some(kind), Some(output))
                    if d.statement.aggregate_at(output).is_some_and(|agg| {
                        // A count may be any aggregate's; a sum or an
                        // average needs a sum.
                        kind == AggKind::Count || matches!(agg.kind, Kind::Sum(_))
                    }) =>
                {
                    let proved = value_of(kind, output, &totals);
                    let row = match group {
                        Some(g) => bundle.get("outputs").and_then(|o| o.get(g)),
                        None => bundle.get("outputs"),
                    };
                    let claimed = row
                        .and_then(|o| o.get(&name))
                        .cloned()
                        .unwrap_or(Value::Null);
                    if same(&proved, &claimed) {
                        Ok(())
                    } else {
                        Err(format!(
                            "{label}: the bundle says {claimed}, the proofs attest {proved}"
                        ))
                    }
                }
                _ => Err(format!("{label}: no such aggregate in the statement")),
            };
            check(&label, result);
        }
        check(
            "every output is attested",
            every_output_attested(bundle, &attested),
        );
        if let Some(grouping) = bundle.get("grouping") {
            check(
                "the groups cover every record",
                group_checks(bundle, grouping, &attested, &d.statement, &totals),
            );
        }
    }
    audit_checks(bundle, &d, &mut check);
    out
}

/// Every value the bundle's `outputs` shows has an attested entry (a
/// group's key aside: the grouping checks cover it), so that no number in
/// it stands there without a proof.
fn every_output_attested(bundle: &Value, attested: &[Value]) -> Result<(), String> {
    let covered = |group: Option<usize>, name: &str| {
        attested.iter().any(|a| {
            a.get("group").and_then(Value::as_u64) == group.map(|g| g as u64)
                && a.get("name").and_then(Value::as_str) == Some(name)
        })
    };
    match bundle.get("outputs") {
        Some(Value::Object(outputs)) => {
            for name in outputs.keys() {
                if !covered(None, name) {
                    return Err(format!("output `{name}`: no attested entry proves it"));
                }
            }
        }
        Some(Value::Array(rows)) => {
            let key = bundle.pointer("/grouping/key").and_then(Value::as_str);
            for (g, row) in rows.iter().enumerate() {
                let row = row
                    .as_object()
                    .ok_or_else(|| format!("`outputs[{g}]` is not an object"))?;
                for name in row.keys().filter(|n| Some(n.as_str()) != key) {
                    if !covered(Some(g), name) {
                        return Err(format!(
                            "output `{name}` of group {g}: no attested entry proves it"
                        ));
                    }
                }
            }
        }
        _ => return Err("`outputs` is neither an object nor a list of rows".into()),
    }
    Ok(())
}

/// A grouped bundle's groups: each group's code is its key's, its count
/// counts exactly the records with that code, every attested output of
/// the group is behind that filter, and the group counts add up to the
/// count of every record (so no group is left out and none counted
/// twice: the codes differ).
fn group_checks(
    bundle: &Value,
    grouping: &Value,
    attested: &[Value],
    st: &Statement,
    totals: &[u64],
) -> Result<(), String> {
    let code = KeyCode::from_name(text(grouping, "encoding")?)
        .ok_or("`grouping.encoding` is not one this symbi knows")?;
    let key_name = text(grouping, "key")?;
    let key_field = field(grouping, "field")?
        .as_u64()
        .ok_or("`grouping.field` is not an index")? as usize;
    let count_at = |output: Option<u64>, what: &str| -> Result<(usize, Vec<usize>), String> {
        let output = output.ok_or_else(|| format!("{what}: no output"))? as usize;
        match st.aggregate_at(output) {
            Some(a) if a.kind == Kind::Count => Ok((output, a.filters.clone())),
            _ => Err(format!("{what}: output {output} is not a count")),
        }
    };
    let (total, filters) = count_at(field(grouping, "total")?.as_u64(), "`grouping.total`")?;
    if !filters.is_empty() {
        return Err("`grouping.total` counts filtered records, not every record".into());
    }
    let groups = field(grouping, "groups")?
        .as_array()
        .ok_or("`grouping.groups` is not a list")?;
    let rows = bundle.get("outputs").and_then(Value::as_array);
    let mut codes = Vec::new();
    let mut filter_of = Vec::new();
    let mut counted = 0u64;
    for (g, group) in groups.iter().enumerate() {
        let key = group.get("key").cloned().unwrap_or(Value::Null);
        let what = format!("group {g} ({key})");
        let c = code
            .of(&key)
            .filter(|c| group.get("code").and_then(Value::as_u64) == Some(u64::from(*c)))
            .ok_or_else(|| format!("{what}: its code is not its key's"))?;
        if codes.contains(&c) {
            return Err(format!("{what}: another group has its code"));
        }
        codes.push(c);
        if rows.and_then(|r| r.get(g)).and_then(|r| r.get(key_name)) != Some(&key) {
            return Err(format!("{what}: `outputs[{g}]` is another group's"));
        }
        let (output, filters) = count_at(group.get("count").and_then(Value::as_u64), &what)?;
        let expected = Comparison {
            field: key_field,
            op: Op::Eq,
            threshold: c,
        };
        match filters.as_slice() {
            [f] if st.comparisons.get(*f) == Some(&expected) => filter_of.push(*f),
            _ => {
                return Err(format!(
                    "{what}: its count is not of `{key_name}` == its code"
                ));
            }
        }
        counted += totals[output];
    }
    if counted != totals[total] {
        return Err(format!(
            "the groups hold {counted} records, the dataset {}",
            totals[total]
        ));
    }
    for a in attested {
        let (Some(g), Some(output)) = (
            a.get("group").and_then(Value::as_u64),
            a.get("output").and_then(Value::as_u64),
        ) else {
            return Err("an attested output of a grouped result names no group".into());
        };
        let filter = filter_of
            .get(g as usize)
            .ok_or_else(|| format!("an attested output names group {g}, which is not listed"))?;
        if !st
            .aggregate_at(output as usize)
            .is_some_and(|agg| agg.filters.contains(filter))
        {
            return Err(format!(
                "output {output} is attested for group {g} but is not behind its key"
            ));
        }
    }
    Ok(())
}

/// Every field a bundle has, per object. Anything else is refused: nothing
/// that is neither signed nor checked travels in a bundle for another
/// tool to show as if it were.
const FIELDS: [(&str, &[&str]); 6] = [
    (
        "",
        &[
            "format",
            "version",
            "program",
            "policy_sha256",
            "signer",
            "dataset",
            "statement",
            "attested",
            "outputs",
            "proofs",
            "verifying_key",
            "grouping",
            "audit",
        ],
    ),
    ("/program", &["file", "sha256", "agent"]),
    (
        "/dataset",
        &[
            "id",
            "records",
            "chunk_records",
            "fields",
            "chunks",
            "commitment",
            "signed",
        ],
    ),
    ("/verifying_key", &["sha256", "key", "shape"]),
    ("/audit", &["checkpoint", "entries"]),
    (
        "/grouping",
        &["key", "field", "encoding", "total", "groups"],
    ),
];

/// The fields of each item of a bundle's lists.
const ITEM_FIELDS: [(&str, &[&str]); 4] = [
    ("/proofs", &["chunk", "records", "outputs", "proof"]),
    ("/attested", &["name", "aggregate", "output", "group"]),
    ("/audit/entries", &["index", "entry", "proof"]),
    ("/grouping/groups", &["key", "code", "count"]),
];

fn unknown_fields(bundle: &Value) -> Result<(), String> {
    let unknown = |object: &serde_json::Map<String, Value>, known: &[&str], at: &str| match object
        .keys()
        .find(|k| !known.contains(&k.as_str()))
    {
        None => Ok(()),
        Some(k) => {
            let name = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            Err(format!(
                "`{}` is not a field of a bundle (nothing unsigned may travel in one)",
                printable(&name)
            ))
        }
    };
    let dotted = |pointer: &str| pointer.trim_start_matches('/').replace('/', ".");
    for (at, known) in FIELDS {
        if let Some(object) = bundle.pointer(at).and_then(Value::as_object) {
            unknown(object, known, &dotted(at))?;
        }
    }
    for (at, known) in ITEM_FIELDS {
        let items = bundle.pointer(at).and_then(Value::as_array);
        for (i, item) in items.into_iter().flatten().enumerate() {
            if let Some(object) = item.as_object() {
                unknown(object, known, &format!("{}[{i}]", dotted(at)))?;
            }
        }
    }
    // A proof's `chunk` is its place in the list; any other number would
    // say something the bundle does not mean.
    for (i, proof) in bundle
        .pointer("/proofs")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if proof.get("chunk").and_then(Value::as_u64) != Some(i as u64) {
            return Err(format!("`proofs[{i}].chunk` is not {i}"));
        }
    }
    Ok(())
}

/// The audit checkpoint (signed by the same key) and the job's entries in
/// it, among them the dataset commitment.
fn audit_checks(bundle: &Value, d: &Decoded, check: &mut impl FnMut(&str, Result<(), String>)) {
    let note = match text(bundle, "audit.checkpoint") {
        Ok(n) => n,
        Err(why) => return check("the audit checkpoint", Err(why)),
    };
    let (size, root) = match d
        .signer
        .verify_note(note)
        .map_err(|e| e.to_string())
        .and_then(parse_checkpoint)
    {
        Ok(x) => x,
        Err(why) => {
            return check(
                "the audit checkpoint",
                Err(format!("the checkpoint does not verify: {why}")),
            );
        }
    };
    check("the audit checkpoint", Ok(()));
    let entries = field(bundle, "audit.entries")
        .ok()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (mut committed, mut proved) = (false, false);
    let mut signed_claims = Vec::new();
    let mut included: Vec<(u64, Value)> = Vec::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        let result = (|| {
            let index = e.get("index").and_then(Value::as_u64).ok_or("no index")?;
            let body = BASE64
                .decode(e.get("entry").and_then(Value::as_str).unwrap_or(""))
                .map_err(|e| e.to_string())?;
            let proof = e
                .get("proof")
                .and_then(Value::as_array)
                .ok_or("no proof")?
                .iter()
                .map(|h| {
                    decode_hex(h.as_str().unwrap_or("")).and_then(|b| {
                        <[u8; 32]>::try_from(b).map_err(|_| "a hash is 32 bytes".to_string())
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if !merkle::verify_inclusion(&merkle::leaf_hash(&body), index, size, &proof, &root) {
                return Err(format!("entry {index} is not in the checkpointed log"));
            }
            let entry: Value = parse_strict(&body)?;
            let kind = entry.get("kind").and_then(Value::as_str);
            let detail = |key: &str| {
                entry
                    .pointer(&format!("/detail/{key}"))
                    .and_then(Value::as_str)
            };
            if kind == Some(EntryKind::DatasetCommitment.as_str())
                && detail("commitment") == Some(encoding::fr_text(&d.commitment).as_str())
            {
                committed = true;
            }
            if kind == Some(EntryKind::Proof.as_str()) {
                if detail("verifying_key_sha256") == Some(d.vk_sha256.as_str()) {
                    proved = true;
                }
                if let Some(claim) = entry.pointer("/detail/claim") {
                    signed_claims.push(claim.clone());
                }
            }
            included.push((index, entry));
            Ok(())
        })();
        check(&format!("audit entry {i}"), result);
    }
    check("the entries are one job's", one_job(&included));
    check(
        "the audit log records the commitment",
        if committed {
            Ok(())
        } else {
            Err("no included audit entry records this dataset commitment".into())
        },
    );
    check(
        "the audit log records the proofs",
        if proved {
            Ok(())
        } else {
            Err("no included audit entry records proofs under this verifying key".into())
        },
    );
    claim_checks(bundle, &signed_claims, check);
}

/// Whether the included entries are one job's, start to end: one
/// `job_start` (its index is the job's number), every other entry naming
/// that job and coming after it, and the job's `job_end`, last, saying
/// it ended `ok`. Entries of other jobs of the same log (genuine, and
/// under the same checkpoint) cannot be mixed in.
fn one_job(entries: &[(u64, Value)]) -> Result<(), String> {
    let kind = |e: &Value| e.get("kind").and_then(Value::as_str).map(str::to_owned);
    let starts: Vec<u64> = entries
        .iter()
        .filter(|(_, e)| kind(e).as_deref() == Some(EntryKind::JobStart.as_str()))
        .map(|(i, _)| *i)
        .collect();
    let job = match starts[..] {
        [job] => job,
        [] => return Err("no included entry starts the job".into()),
        _ => return Err(format!("{} included entries start a job", starts.len())),
    };
    let mut end = None;
    for (index, entry) in entries {
        if *index == job {
            continue;
        }
        let named = entry.pointer("/detail/job").and_then(Value::as_u64);
        if named != Some(job) || *index < job {
            return Err(format!(
                "entry {index} belongs to job {}, not to the bundle's job {job}",
                named.map_or("(none)".into(), |n| n.to_string())
            ));
        }
        if kind(entry).as_deref() == Some(EntryKind::JobEnd.as_str()) {
            end = Some((
                *index,
                entry.pointer("/detail/status").and_then(Value::as_str),
            ));
        }
    }
    match end {
        None => Err(format!("the end of job {job} is not included")),
        Some((_, status)) if status != Some("ok") => Err(format!(
            "job {job} ended {}",
            status.unwrap_or("without a status")
        )),
        Some((index, _)) if entries.iter().any(|(i, _)| *i > index) => {
            Err(format!("an entry comes after the end of job {job}"))
        }
        Some(_) => Ok(()),
    }
}

/// A C2SP checkpoint body: origin, size, base64 root.
fn parse_checkpoint(body: &str) -> Result<(u64, [u8; 32]), String> {
    let mut lines = body.lines().skip(1);
    let size = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no tree size")?;
    let root = lines
        .next()
        .and_then(|l| BASE64.decode(l).ok())
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or("no root hash")?;
    Ok((size, root))
}

/// The parts of a bundle the owner signs: the proofs' audit entry holds
/// each one's SHA-256 (`claim`), so that nothing a reader of the result
/// relies on can change without the owner's key. In the order the checks
/// name them.
pub const CLAIM_PARTS: [&str; 9] = [
    "program",
    "policy",
    "dataset",
    "statement",
    "circuit shape",
    "verifying key",
    "attested outputs",
    "outputs",
    "grouping",
];

/// The name of the check that fails when no key pins the signer.
pub const PINNED: &str = "the signer is pinned";

/// A bundle's claim, part by part ([`CLAIM_PARTS`]): the program (its
/// file as given, SHA-256 and agent), the policies' SHA-256, the dataset (id, field
/// names, records, chunk size, commitment), the statement (every
/// comparison and aggregate), its circuit shape (recomputed from the
/// statement: the bundle's `verifying_key.shape` only picks which of the
/// recomputed ids, see [`shape`]), the verifying key's SHA-256, the attested
/// outputs (name, aggregate, output, group), the outputs' values and the
/// grouping.
pub fn claim(bundle: &Value) -> Result<Vec<(&'static str, Value)>, String> {
    let statement: Statement = serde_json::from_value(field(bundle, "statement")?.clone())
        .map_err(|e| format!("`statement`: {e}"))?;
    let capacity = field(bundle, "dataset.chunk_records")?
        .as_u64()
        .ok_or("`dataset.chunk_records` is not a count")? as usize;
    let values = [
        json!({
            "file": text(bundle, "program.file")?,
            "sha256": text(bundle, "program.sha256")?,
            "agent": text(bundle, "program.agent")?,
        }),
        json!(text(bundle, "policy_sha256")?),
        json!({
            "id": text(bundle, "dataset.id")?,
            "fields": field(bundle, "dataset.fields")?,
            "records": field(bundle, "dataset.records")?,
            "chunk_records": capacity,
            "commitment": text(bundle, "dataset.commitment")?,
        }),
        serde_json::to_value(&statement).map_err(|e| e.to_string())?,
        json!(shape(bundle, &statement, capacity)),
        json!(text(bundle, "verifying_key.sha256")?),
        field(bundle, "attested")?.clone(),
        field(bundle, "outputs")?.clone(),
        bundle.get("grouping").cloned().unwrap_or(Value::Null),
    ];
    Ok(CLAIM_PARTS.into_iter().zip(values).collect())
}

/// The SHA-256 of each part of a bundle's claim, as the proofs' audit
/// entry holds them: of the part's compact JSON text (keys in the
/// bundle's order). The owner hashes the bundle as it will be read back
/// (written, then parsed), so that both sides hash the same numbers.
pub fn claim_digests(bundle: &Value) -> Result<Value, String> {
    Ok(Value::Object(
        claim(bundle)?
            .into_iter()
            .map(|(part, value)| (part.to_owned(), digest(value.to_string().as_bytes()).into()))
            .collect(),
    ))
}

/// Each part of the bundle's claim against what the owner signed (the
/// `claim` of an included proofs entry).
fn claim_checks(
    bundle: &Value,
    signed: &[Value],
    check: &mut impl FnMut(&str, Result<(), String>),
) {
    let ours = match claim_digests(bundle) {
        Ok(c) => c,
        Err(why) => return check("the signed claim", Err(why)),
    };
    // The signed claim that matches, or the first to name what differs.
    let Some(theirs) = signed
        .iter()
        .find(|c| **c == ours)
        .or_else(|| signed.first())
    else {
        return check(
            "the signed claim",
            Err("no included audit entry signs this bundle's claim".into()),
        );
    };
    for part in CLAIM_PARTS {
        let result = if theirs.get(part) == ours.get(part) {
            Ok(())
        } else {
            Err(format!(
                "the bundle's {part} is not the one the owner signed with the proofs"
            ))
        };
        check(&format!("the signed {part}"), result);
    }
}

/// Reads a bundle file as JSON (the error names the file).
pub fn read_bundle(path: &Path) -> Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse_strict(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// JSON with no object holding a key twice. Parsers disagree on which of
/// two values wins (serde_json and Python the last, others the first), so
/// a bundle with both would show one thing to us and another to a tool.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, String> {
    use serde::Deserializer;
    let value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    serde_json::Deserializer::from_slice(bytes)
        .deserialize_any(Unique)
        .map_err(|e| format!("not a bundle: {e}"))?;
    Ok(value)
}

/// Walks a JSON document and fails on an object with a key twice.
struct Unique;

impl<'de> serde::de::Visitor<'de> for Unique {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Unique)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(serde::de::Error::custom(format!(
                    "the key `{}` appears twice in one object",
                    printable(&key)
                )));
            }
            map.next_value_seed(Unique)?;
        }
        Ok(())
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Unique {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// Runs every check of the bundle at `path` (a bundle that cannot be read
/// is one failed check).
pub fn verify_file(path: &Path, key: Option<&AuditVerifyingKey>) -> Vec<Check> {
    read_and_check(path, key).0
}

/// The checks of the bundle at `path`, read once, and the bundle they
/// are of (`None`: it could not be read, which is one failed check).
fn read_and_check(path: &Path, key: Option<&AuditVerifyingKey>) -> (Vec<Check>, Option<Value>) {
    match read_bundle(path) {
        Ok(bundle) => (checks(&bundle, key), Some(bundle)),
        Err(why) => (
            vec![Check {
                what: "the bundle decodes".into(),
                failure: Some(why),
            }],
            None,
        ),
    }
}

/// The key of group `g` of a grouped bundle.
fn group_key(bundle: &Value, g: usize) -> Value {
    bundle
        .pointer(&format!("/grouping/groups/{g}/key"))
        .cloned()
        .unwrap_or(Value::Null)
}

/// What a bundle attests, in words: one line per attested output, e.g.
/// `seniors = 771: count of records with age >= 65, over 2000 records of
/// dataset D (commitment C)`. Field names come from the bundle's dataset
/// (which the owner signs); the values are the outputs'.
pub fn describe(bundle: &Value) -> Result<Vec<(String, Value, String)>, String> {
    let d = decode(bundle)?;
    let names: Vec<String> = serde_json::from_value(field(bundle, "dataset.fields")?.clone())
        .map_err(|e| format!("`dataset.fields`: {e}"))?;
    let name = |f: usize| {
        names
            .get(f)
            .cloned()
            .unwrap_or_else(|| format!("field {f}"))
    };
    let st = &d.statement;
    let over = format!(
        "over {} records of dataset {} (commitment {})",
        d.records,
        d.dataset,
        encoding::fr_text(&d.commitment)
    );
    let attested = field(bundle, "attested")?
        .as_array()
        .ok_or("`attested` is not a list")?;
    let mut out = Vec::new();
    for a in attested {
        let output_name = a.get("name").and_then(Value::as_str).unwrap_or("?");
        let group = a.get("group").and_then(Value::as_u64);
        let aggregate = a
            .get("output")
            .and_then(Value::as_u64)
            .and_then(|o| st.aggregate_at(o as usize))
            .ok_or_else(|| format!("output `{output_name}`: no such aggregate in the statement"))?;
        let what = match (a.get("aggregate").and_then(Value::as_str), aggregate.kind) {
            (Some("count"), _) => "count of records".to_owned(),
            (Some("sum"), Kind::Sum(f)) => format!("sum of {} over records", name(f)),
            (Some("avg"), Kind::Sum(f)) => format!("average of {} over records", name(f)),
            _ => {
                return Err(format!(
                    "output `{output_name}`: not an aggregate of the statement"
                ));
            }
        };
        let filters: Vec<String> = aggregate
            .filters
            .iter()
            .filter_map(|&c| st.comparisons.get(c))
            .map(|c| {
                let op = match c.op {
                    Op::Ge => ">=",
                    Op::Lt => "<",
                    Op::Eq => "==",
                };
                format!("{} {op} {}", name(c.field), c.threshold)
            })
            .collect();
        let filter = if filters.is_empty() {
            String::new()
        } else {
            format!(" with {}", filters.join(" and "))
        };
        let row = match group {
            Some(g) => bundle.get("outputs").and_then(|o| o.get(g as usize)),
            None => bundle.get("outputs"),
        };
        let value = row
            .and_then(|r| r.get(output_name))
            .cloned()
            .unwrap_or(Value::Null);
        let label = match group {
            Some(g) => format!("{output_name} of group {}", group_key(bundle, g as usize)),
            None => output_name.to_owned(),
        };
        out.push((
            label.clone(),
            value.clone(),
            format!("{label} = {value}: {what}{filter}, {over}"),
        ));
    }
    Ok(out)
}

/// The report of [`verify_file`] as `symbi verify` prints it: one line a
/// check and `PATH: verified` at the end if all passed, or (with `json`)
/// one object. A consistency-only check ([`consistency_only`]) ends with
/// `PATH: consistent, signer not pinned (not verified)` instead.
pub fn report(path: &Path, results: &[Check], json_out: bool) -> String {
    let ok = results.iter().all(|c| c.failure.is_none());
    // Without the pin check, the bundle was only checked for consistency.
    let pinned = results
        .iter()
        .any(|c| c.what == PINNED || c.what == "the signer is the given key");
    if json_out {
        let out = json!({
            "bundle": path.display().to_string(),
            "ok": ok,
            "verified": ok && pinned,
            "checks": results.iter().map(|c| json!({
                "check": c.what,
                "ok": c.failure.is_none(),
                "failure": c.failure,
            })).collect::<Vec<_>>(),
        });
        return serde_json::to_string_pretty(&out).expect("JSON values serialize") + "\n";
    }
    let mut text = String::new();
    for c in results {
        match &c.failure {
            None => text.push_str(&format!("ok      {}\n", printable(&c.what))),
            Some(why) => text.push_str(&format!(
                "FAILED  {}: {}\n",
                printable(&c.what),
                printable(why)
            )),
        }
    }
    if ok && pinned {
        text.push_str(&format!("{}: verified\n", path.display()));
    } else if ok {
        text.push_str(&format!(
            "{}: consistent, signer not pinned (not verified)\n",
            path.display()
        ));
    }
    text
}

/// The checks of a consistency-only run: every check but the signer's
/// pin, so that a bundle made with any key can pass them; never reported
/// as verified.
pub fn consistency_only(mut results: Vec<Check>) -> Vec<Check> {
    results.retain(|c| c.what != PINNED);
    results
}

/// The trust flags of `symbi verify` and `symbi-verify`.
#[derive(Clone, Debug, clap::Args)]
pub struct Trust {
    /// The owner's public key (their `audit_ed25519.pub`), which must have
    /// signed the bundle. Without it nothing is verified: exit 4, "signer
    /// not pinned".
    #[arg(long, value_name = "FILE")]
    pub key: Option<std::path::PathBuf>,
    /// Check only that the bundle is consistent, under whatever key it
    /// carries: never reported as verified (anyone can make a consistent
    /// bundle with a fresh key).
    #[arg(long, conflicts_with = "key")]
    pub consistency_only: bool,
    /// A trust file: the owners whose bundles are accepted, one per line as
    /// `NAME KEY` (KEY: the text of their `audit_ed25519.pub`; `#` starts a
    /// comment). The bundle's signer must be one of them.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["key", "consistency_only"])]
    pub trust: Option<std::path::PathBuf>,
}

/// The owners of a trust file ([`Trust::trust`]): name and key, in order.
pub fn read_trust_file(path: &Path) -> Result<Vec<(String, AuditVerifyingKey)>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut owners = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |why: String| format!("{}:{}: {why}", path.display(), n + 1);
        let (name, key) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| at("expected `NAME KEY`".into()))?;
        let key = AuditVerifyingKey::parse(key.trim()).map_err(|e| at(e.to_string()))?;
        owners.push((name.to_owned(), key));
    }
    if owners.is_empty() {
        return Err(format!("{}: names no owner", path.display()));
    }
    Ok(owners)
}

/// The key of `trust`'s file that signed the bundle at `path`, and the
/// check that says so (failing when none did).
fn trusted_signer(file: &Path, path: &Path) -> Result<(Option<AuditVerifyingKey>, Check), String> {
    let owners = read_trust_file(file)?;
    let signer = read_bundle(path).ok().and_then(|b| {
        b.get("signer")
            .and_then(Value::as_str)
            .and_then(|t| AuditVerifyingKey::parse(t).ok())
    });
    Ok(
        match signer.and_then(|s| owners.into_iter().find(|(_, k)| *k == s)) {
            Some((name, key)) => (
                Some(key),
                Check {
                    what: format!("the signer is `{name}` of the trust file"),
                    failure: None,
                },
            ),
            None => (
                None,
                Check {
                    what: "the signer is in the trust file".into(),
                    failure: Some(format!(
                        "the bundle's signer is none of the owners {} names",
                        file.display()
                    )),
                },
            ),
        },
    )
}

/// What `symbi verify` and `symbi-verify` do: the checks of the bundle at
/// `path` under `trust` (without a key, the pin check fails, unless a
/// consistency-only run was asked for) and `more` of them, and their
/// report. Returns the
/// report and whether every check passed; an unreadable key file is the
/// error.
pub fn verify_command(
    path: &Path,
    trust: &Trust,
    json_out: bool,
    more: &dyn Fn(&Value) -> Vec<Check>,
) -> Result<(String, bool), String> {
    let (key, trusted) = match (&trust.key, &trust.trust) {
        (Some(k), _) => (Some(read_key(k)?), None),
        (None, Some(file)) => {
            let (key, check) = trusted_signer(file, path)?;
            (key, Some(check))
        }
        (None, None) => (None, None),
    };
    // Read once: every check, and what is said in words, is of these
    // bytes (a file swapped between reads, or a pipe, cannot split them;
    // the trust file's key was chosen from an earlier read, and a bundle
    // swapped since fails its signature check).
    let (mut results, bundle) = read_and_check(path, key.as_ref());
    results.extend(trusted);
    if let Some(b) = &bundle {
        results.extend(more(b));
    }
    if trust.consistency_only {
        results = consistency_only(results);
    }
    let ok = results.iter().all(|c| c.failure.is_none());
    // Said in words only once verified (a pinned signer, every check
    // passed): before that, the words are the bundle's claims.
    let attests = match (&bundle, ok && key.is_some()) {
        (Some(b), true) => describe(b).unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok((
        report_with_statement(path, &results, &attests, json_out),
        ok,
    ))
}

/// [`report`], then what a verified bundle attests, in words
/// ([`describe`]).
pub fn report_with_statement(
    path: &Path,
    results: &[Check],
    attests: &[(String, Value, String)],
    json_out: bool,
) -> String {
    let text = report(path, results, json_out);
    if json_out {
        let mut out: Value = serde_json::from_str(&text).expect("the report is JSON");
        out["attests"] = attests
            .iter()
            .map(|(name, value, words)| json!({"output": name, "value": value, "statement": words}))
            .collect();
        return serde_json::to_string_pretty(&out).expect("JSON values serialize") + "\n";
    }
    let mut text = text;
    for (_, _, words) in attests {
        text.push_str(&format!("attests {}\n", printable(words)));
    }
    text
}

/// `text` with its control characters escaped: nothing a bundle carries
/// (an output's name, a field's, the dataset's id) can end a line of the
/// report or move the terminal's cursor over it.
fn printable(text: &str) -> String {
    // Control characters, and the invisible ones that reorder or hide
    // text (bidirectional overrides and isolates, zero-width marks).
    let hidden = |c: char| matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}');
    text.chars()
        .map(|c| {
            if c.is_control() || hidden(c) {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Why one proof of a bundle cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The bundle does not decode, or the proof's public inputs do not.
    #[error("{0}")]
    Invalid(String),
    /// `chunk` is not one of the bundle's proofs.
    #[error("the bundle has {proofs} proofs; --chunk {chunk} is not one")]
    NoSuchChunk {
        /// The index asked for.
        chunk: usize,
        /// How many proofs the bundle has.
        proofs: usize,
    },
}

/// Proof `chunk` of a decoded bundle as snarkjs' three files (name and
/// JSON): `snarkjs groth16 verify verification_key.json public.json
/// proof.json` checks it.
pub fn snarkjs_files(d: &Decoded, chunk: usize) -> Result<[(&'static str, Value); 3], ExportError> {
    let c = d.proofs.get(chunk).ok_or(ExportError::NoSuchChunk {
        chunk,
        proofs: d.proofs.len(),
    })?;
    let public = attest::chunk_public(&d.statement, c)
        .map_err(|why| ExportError::Invalid(format!("proof {chunk}: {why}")))?;
    Ok([
        (
            "verification_key.json",
            symbiont_circuits::snarkjs::verifying_key(&d.vk),
        ),
        ("proof.json", symbiont_circuits::snarkjs::proof(&c.proof)),
        ("public.json", symbiont_circuits::snarkjs::public(&public)),
    ])
}

/// snarkjs' three files: each one's name and its pretty JSON text.
pub type SnarkjsFiles = [(&'static str, String); 3];

/// Proof `chunk` of the bundle at `path`, as snarkjs' three files, with
/// the bundle's number of proofs.
pub fn snarkjs_export(path: &Path, chunk: usize) -> Result<(usize, SnarkjsFiles), ExportError> {
    let decoded = read_bundle(path)
        .and_then(|b| decode(&b))
        .map_err(ExportError::Invalid)?;
    let files = snarkjs_files(&decoded, chunk)?.map(|(name, value)| {
        (
            name,
            serde_json::to_string_pretty(&value).expect("JSON values serialize") + "\n",
        )
    });
    Ok((decoded.proofs.len(), files))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_compare_as_numbers() {
        assert!(same(&json!(3), &json!(3)));
        assert!(!same(&json!(3), &json!(4)));
        assert!(same(&json!(2.5), &json!(2.5)));
        assert!(!same(&json!(2.5), &json!(2.6)));
        assert!(!same(&json!(3), &Value::Null));
    }

    #[test]
    fn hex_is_checked() {
        assert_eq!(decode_hex("00ff").unwrap(), vec![0, 255]);
        assert!(decode_hex("0").is_err());
        assert!(decode_hex("zz").is_err());
    }
}
