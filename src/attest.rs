//! Attestation in `symbi run --bundle`, and the auditor's `symbi verify`
//! and `symbi proof export`.
//!
//! A run with `--bundle` plans the statement behind the agent's
//! `prove(...)` fields before anything runs ([`plan`]), commits to the
//! input's attested fields at ingestion and signs the commitment with the
//! audit key ([`commit`]), proves the statement over the committed chunks
//! once the job has its result and checks that the proofs attest exactly
//! that result ([`Attesting::prove`]), and after the job's last audit
//! checkpoint writes the bundle ([`Attesting::write`]). `docs/ATTESTATION.md`
//! describes the bundle field by field.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use sha2::Digest;
use symbiont_circuits::attest::{self, Chunk, Committed, Keys, encoding};
use symbiont_circuits::statement::{Aggregate, Comparison, Kind, Op, Statement};
use symbiont_crypto::programmable::{self as fhe, Kind as FheKind};
use symbiont_crypto::{AuditSigningKey, AuditVerifyingKey, EntryKind, merkle};
use symbiont_operators::{
    AfterError, AggKind, FieldType, Format, OutExpr, Output, Query, Source, Value as Cell,
};

use crate::exit;

/// The bundle format's name and version.
pub(crate) const FORMAT: &str = "symbiont-attestation-bundle";
pub(crate) const VERSION: u64 = 1;

/// Records per chunk: the general circuit costs about a hundred
/// constraints a record, the lane circuit about five.
const GENERAL_CHUNK: usize = 2048;
const LANES_CHUNK: usize = symbiont_circuits::sum::CHUNK;

/// An attested output: its name in the result and where its value is in
/// the statement's outputs.
#[derive(Clone, Debug)]
struct Attested {
    name: String,
    kind: AggKind,
    /// Index of its count in the outputs (a sum follows it). Before a
    /// grouped statement is expanded: the index of its aggregate.
    output: usize,
    /// Its group's index, for a grouped result.
    group: Option<usize>,
}

/// How a group key becomes the `u32` the commitment holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyCode {
    /// A string: the first four bytes of its SHA-256, big-endian.
    Text,
    /// An `int` in 0..2^32 (or a `bool`): itself.
    Int,
}

impl KeyCode {
    fn name(self) -> &'static str {
        match self {
            KeyCode::Text => "sha256-u32",
            KeyCode::Int => "int",
        }
    }

    fn from_name(name: &str) -> Option<KeyCode> {
        [KeyCode::Text, KeyCode::Int]
            .into_iter()
            .find(|k| k.name() == name)
    }

    /// The code of a key as the job's result shows it.
    fn of(self, key: &Value) -> Option<u32> {
        match (self, key) {
            (KeyCode::Text, Value::String(s)) => Some(text_code(s)),
            (KeyCode::Int, Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            (KeyCode::Int, Value::Bool(b)) => Some(u32::from(*b)),
            _ => None,
        }
    }
}

/// A string key's code: the first four bytes of its SHA-256.
fn text_code(s: &str) -> u32 {
    let digest = sha2::Sha256::digest(s.as_bytes());
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// A grouped result's key, as planned.
#[derive(Clone, Debug)]
struct GroupPlan {
    /// The result field that holds the key (`name: g.key`).
    key_name: String,
    /// The key's index among the attested fields.
    field: usize,
    code: KeyCode,
}

/// A grouped statement's groups, once the job has its result.
#[derive(Clone, Debug)]
struct Groups {
    keys: Vec<Value>,
    codes: Vec<u32>,
    /// Per group, the output that counts its records.
    counts: Vec<usize>,
    /// The output that counts every record.
    total: usize,
}

/// What a `--bundle` run attests, planned before it runs.
#[derive(Clone, Debug)]
pub(crate) struct Planned {
    /// The statement; for a grouped result, the aggregates of one group
    /// without the key's filter, expanded over the groups once the job
    /// has its result ([`Planned::expand`]).
    statement: Statement,
    /// The schema indices of the attested fields, in statement order.
    fields: Vec<usize>,
    /// Their names.
    field_names: Vec<String>,
    attested: Vec<Attested>,
    capacity: usize,
    grouping: Option<GroupPlan>,
}

fn comparison(c: &fhe::Comparison, field: usize, label: &str) -> Result<Comparison, String> {
    let threshold = u32::try_from(c.constant).map_err(|_| {
        format!(
            "`{label}`: its threshold {} is outside 0..2^32, the range attestation covers",
            c.constant
        )
    })?;
    Ok(Comparison {
        field,
        op: match c.op {
            fhe::Op::Ge => Op::Ge,
            fhe::Op::Lt => Op::Lt,
            fhe::Op::Eq => Op::Eq,
        },
        threshold,
    })
}

/// A result struct's fields and how each is computed.
type ResultFields<'a> = &'a [(String, OutExpr)];

/// The result's fields (of the struct, or of each group's struct), and
/// the grouping key's schema index.
fn result_fields(query: &Query) -> Result<(ResultFields<'_>, Option<usize>), String> {
    let (fields, grouping) = match (&query.output, &query.grouping) {
        (Output::Struct { fields, .. }, None) => return Ok((fields, None)),
        (Output::Groups(inner), Some(g)) => match &**inner {
            Output::Struct { fields, .. } => (fields, g),
            _ => return Err("a grouped result is attested as a struct per group".into()),
        },
        _ => return Err("attestation covers a struct result, or a struct per group".into()),
    };
    if !grouping.pipeline.steps.is_empty() {
        return Err(
            "a grouped result is attested when `group_by` is applied to the input stream itself (no filter or map before it)"
                .into(),
        );
    }
    let symbiont_operators::Scalar::Field(key) = grouping.key else {
        return Err("a grouped result is attested when its key is a field of the record".into());
    };
    Ok((fields, Some(key)))
}

/// The statement behind `query`'s `prove(...)`, or why it cannot be
/// attested. Attested outputs must be aggregates of the result struct
/// (`count`, `sum`, `avg` of `int` fields), each behind filters the
/// programmable path also evaluates (`field >= c`, `<`, `==`, `>`, `<=`,
/// `&&`). A grouped result (`group_by(p => p.key)` on the input) is
/// attested per group, the key a `string`, `int` or `bool` field.
pub(crate) fn plan(query: &Query) -> Result<Planned, String> {
    if query.prove.is_empty() {
        return Err(format!(
            "the agent `{}` proves nothing: name the result fields to attest with `prove(...)`",
            query.agent
        ));
    }
    let (fields, key) = result_fields(query)?;
    let mut chosen: Vec<usize> = Vec::new();
    let mut named = Vec::new();
    for name in &query.prove {
        let expr = fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e)
            .ok_or_else(|| format!("prove({name}): the result has no field `{name}`"))?;
        let OutExpr::Agg(n) = expr else {
            return Err(format!(
                "prove({name}): only a field that is one aggregate can be attested"
            ));
        };
        if !chosen.contains(n) {
            chosen.push(*n);
        }
        named.push((name.clone(), *n));
    }
    let mut sub = query.clone();
    sub.grouping = None;
    sub.aggregates = chosen
        .iter()
        .map(|n| query.aggregates[*n].clone())
        .collect();
    let compiled = symbiont_operators::compile(&sub)
        .map_err(|why| why.replace("over restricted records at rest", "cannot be attested"))?;
    let slots = symbiont_operators::encrypted_fields(&query.schema);
    // The attested fields: every slot a comparison or a sum reads.
    let mut used: Vec<usize> = compiled
        .spec
        .comparisons
        .iter()
        .map(|c| c.slot)
        .chain(compiled.spec.aggregates.iter().filter_map(|a| a.slot))
        .collect();
    used.sort_unstable();
    used.dedup();
    if used.is_empty() && key.is_none() {
        // Counts alone: the commitment still covers a field.
        used.push(
            *slots
                .first()
                .ok_or("the records have no numeric field to commit to")?,
        );
    }
    let field_of = |slot: usize| used.iter().position(|s| *s == slot).expect("collected");
    for slot in &used {
        let (name, ty) = &query.schema.fields[slots[*slot]];
        if *ty == FieldType::Float {
            return Err(format!(
                "`{name}` is a float: attestation covers int (and bool) fields"
            ));
        }
    }
    let mut schema_fields: Vec<usize> = used.iter().map(|s| slots[*s]).collect();
    let grouping = match key {
        None => None,
        Some(key) => {
            let (key_name, ty) = &query.schema.fields[key];
            let code = match ty {
                FieldType::Str => KeyCode::Text,
                FieldType::Int | FieldType::Bool => KeyCode::Int,
                FieldType::Float => {
                    return Err(format!(
                        "the group key `{key_name}` is a float: attestation covers string, int and bool keys"
                    ));
                }
            };
            let result_key = fields
                .iter()
                .find(|(_, e)| matches!(e, OutExpr::Key))
                .map(|(n, _)| n.clone())
                .ok_or("a grouped result is attested with its key as a field (`name: g.key`)")?;
            let field = match schema_fields.iter().position(|f| *f == key) {
                Some(i) => i,
                None => {
                    schema_fields.push(key);
                    schema_fields.len() - 1
                }
            };
            Some(GroupPlan {
                key_name: result_key,
                field,
                code,
            })
        }
    };
    let mut comparisons = Vec::new();
    for (i, c) in compiled.spec.comparisons.iter().enumerate() {
        let label = sub
            .aggregates
            .iter()
            .zip(&compiled.spec.aggregates)
            .find(|(_, a)| a.filters.contains(&i))
            .map_or("", |(s, _)| s.label.as_str());
        comparisons.push(comparison(c, field_of(c.slot), label)?);
    }
    let mut aggregates = Vec::new();
    for (spec, a) in sub.aggregates.iter().zip(&compiled.spec.aggregates) {
        let kind = match (a.kind, a.slot) {
            (FheKind::Count, _) => Kind::Count,
            (FheKind::Sum, Some(slot)) => Kind::Sum(field_of(slot)),
            _ => {
                return Err(format!(
                    "`{}`: min and max are not attested (count, sum and avg are)",
                    spec.label
                ));
            }
        };
        aggregates.push(Aggregate {
            kind,
            filters: a.filters.clone(),
        });
    }
    let statement = Statement {
        fields: schema_fields.len(),
        comparisons,
        aggregates,
    };
    statement.check()?;
    let offsets = statement.offsets();
    let attested = named
        .into_iter()
        .map(|(name, n)| {
            let i = chosen.iter().position(|c| *c == n).expect("chosen");
            Attested {
                name,
                kind: query.aggregates[n].kind,
                output: if grouping.is_some() { i } else { offsets[i] },
                group: None,
            }
        })
        .collect();
    let capacity = match (&grouping, attest::CircuitKind::of(&statement)) {
        (None, attest::CircuitKind::Lanes) => LANES_CHUNK,
        _ => GENERAL_CHUNK,
    };
    Ok(Planned {
        field_names: schema_fields
            .iter()
            .map(|f| query.schema.fields[*f].0.clone())
            .collect(),
        fields: schema_fields,
        statement,
        attested,
        capacity,
        grouping,
    })
}

/// `aggregate` in `aggregates`, added if it is not there: its index.
fn index_of(aggregates: &mut Vec<Aggregate>, aggregate: Aggregate) -> usize {
    match aggregates.iter().position(|a| *a == aggregate) {
        Some(i) => i,
        None => {
            aggregates.push(aggregate);
            aggregates.len() - 1
        }
    }
}

impl Planned {
    /// A grouped statement over the groups of `result` (the job's): every
    /// attested aggregate once per group behind `key == code`, a count per
    /// group and a count of every record, so that a verifier sees the
    /// groups cover the dataset.
    fn expand(&self, result: &Value) -> Result<(Statement, Vec<Attested>, Groups), String> {
        let g = self.grouping.as_ref().expect("a grouped plan");
        let rows = result
            .as_array()
            .ok_or("the grouped result is not a list")?;
        let base = &self.statement;
        let mut st = Statement {
            fields: base.fields,
            comparisons: base.comparisons.clone(),
            aggregates: vec![Aggregate {
                kind: Kind::Count,
                filters: Vec::new(),
            }],
        };
        let mut attested = Vec::new();
        let (mut keys, mut codes, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for (group, row) in rows.iter().enumerate() {
            let key = row.get(&g.key_name).cloned().unwrap_or(Value::Null);
            let code = g.code.of(&key).ok_or_else(|| {
                format!(
                    "the group key {key} cannot be attested ({} keys)",
                    g.code.name()
                )
            })?;
            if let Some(other) = codes.iter().position(|c| *c == code) {
                return Err(format!(
                    "the group keys {} and {key} have the same {} code",
                    keys[other],
                    g.code.name()
                ));
            }
            let filter = st.comparisons.len();
            st.comparisons.push(Comparison {
                field: g.field,
                op: Op::Eq,
                threshold: code,
            });
            let mine: Vec<usize> = base
                .aggregates
                .iter()
                .map(|a| {
                    let mut filters = a.filters.clone();
                    filters.push(filter);
                    index_of(
                        &mut st.aggregates,
                        Aggregate {
                            kind: a.kind,
                            filters,
                        },
                    )
                })
                .collect();
            counts.push(index_of(
                &mut st.aggregates,
                Aggregate {
                    kind: Kind::Count,
                    filters: vec![filter],
                },
            ));
            attested.extend(self.attested.iter().map(|a| Attested {
                name: a.name.clone(),
                kind: a.kind,
                output: mine[a.output],
                group: Some(group),
            }));
            keys.push(key);
            codes.push(code);
        }
        st.check()?;
        let offsets = st.offsets();
        for a in &mut attested {
            a.output = offsets[a.output];
        }
        let groups = Groups {
            keys,
            codes,
            counts: counts.iter().map(|c| offsets[*c]).collect(),
            total: offsets[0],
        };
        Ok((st, attested, groups))
    }
}

/// A `--bundle` run in progress: the commitment, then the proofs.
pub(crate) struct Attesting {
    planned: Planned,
    committed: Committed,
    dataset: String,
    note: String,
    signer: AuditVerifyingKey,
    chunks: Vec<Chunk>,
    vk: Option<Vec<u8>>,
    /// The audit entries of the job (their indices), for inclusion proofs.
    entries: Vec<u64>,
    /// The job's result, once proved.
    result: Value,
    /// A grouped result's groups, once proved.
    groups: Option<Groups>,
}

/// Reads `input`'s attested fields (every record the job reads, in order)
/// and commits to them: the ingestion side. Errors name the line and
/// field, never a value.
pub(crate) fn commit(
    query: &Query,
    planned: Planned,
    input: &Path,
    dataset: &str,
    key: &AuditSigningKey,
) -> Result<std::result::Result<Attesting, String>> {
    let Some(format) = Format::of_path(input) else {
        return Ok(Err(format!(
            "{}: attestation reads a .csv, .ndjson, .parquet or .arrow file",
            input.display()
        )));
    };
    let source = match Source::open(input, format, &query.schema, 1) {
        Ok(s) => s,
        Err(e) => return Ok(Err(e.to_string())),
    };
    let mut used = vec![false; query.schema.fields.len()];
    for f in &planned.fields {
        used[*f] = true;
    }
    let mut values = Vec::new();
    let mut bad = None;
    let read = source.read(
        0,
        &query.schema,
        &used,
        |record| {
            if bad.is_some() {
                return;
            }
            for f in &planned.fields {
                let name = &query.schema.fields[*f].0;
                let v = match record.values.get(*f) {
                    Some(Cell::Int(v)) => u32::try_from(*v).ok(),
                    Some(Cell::Bool(b)) => Some(u32::from(*b)),
                    // Only a group key is a string.
                    Some(Cell::Str(s)) => Some(text_code(s)),
                    _ => None,
                };
                match v {
                    Some(v) => values.push(v),
                    None => {
                        bad = Some(format!(
                            "{}:line {}: field `{name}`: attestation covers values in 0..2^32, this one is not",
                            input.display(),
                            record.line
                        ));
                        return;
                    }
                }
            }
        },
        // A row the job rejects is rejected here too: it is not data.
        |_| AfterError::Continue,
    );
    if let Err(e) = read {
        return Ok(Err(e.to_string()));
    }
    if let Some(why) = bad {
        return Ok(Err(why));
    }
    let fields = planned.statement.fields;
    let committed = Committed::new(&values, fields, planned.capacity);
    let records = values.len() / fields;
    let note = key.sign_note(&note_body(
        dataset,
        records as u64,
        &committed.chunks.iter().map(|c| c.2).collect::<Vec<_>>(),
        &committed.dataset(),
    ));
    Ok(Ok(Attesting {
        planned,
        committed,
        dataset: dataset.to_string(),
        note,
        signer: key.verifying_key(),
        chunks: Vec::new(),
        vk: None,
        entries: Vec::new(),
        result: Value::Null,
        groups: None,
    }))
}

/// What the owner signs: the dataset, its record count, its chunks'
/// commitments and the dataset commitment.
fn note_body(
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

impl Attesting {
    /// The audit entry of the commitment.
    pub(crate) fn commitment_entry(&self, job: u64) -> Value {
        json!({
            "job": job,
            "dataset": self.dataset,
            "records": self.records(),
            "chunk_records": self.planned.capacity,
            "chunks": self.committed.chunks.len(),
            "commitment": encoding::fr_text(&self.committed.dataset()),
            "fields": self.planned.field_names,
        })
    }

    fn records(&self) -> u64 {
        self.committed
            .chunks
            .iter()
            .map(|c| (c.1.len() / self.planned.statement.fields) as u64)
            .sum()
    }

    /// Remembers an audit entry of the job for the bundle's inclusion
    /// proofs.
    pub(crate) fn record_entry(&mut self, index: u64) {
        self.entries.push(index);
    }

    /// Proves the statement over every chunk (keys from `keys_dir`, set up
    /// on first use) and checks that the proofs attest `result`'s values.
    /// Returns whether the keys were made now.
    pub(crate) fn prove(
        &mut self,
        keys_dir: &Path,
        result: &Value,
    ) -> Result<std::result::Result<bool, String>> {
        if self.planned.grouping.is_some() {
            match self.planned.expand(result) {
                Ok((statement, attested, groups)) => {
                    self.planned.statement = statement;
                    self.planned.attested = attested;
                    self.groups = Some(groups);
                }
                Err(why) => return Ok(Err(why)),
            }
        }
        let st = &self.planned.statement;
        let (keys, created) = Keys::load_or_setup(keys_dir, st, self.planned.capacity)
            .with_context(|| format!("the proving keys in {}", keys_dir.display()))?;
        self.chunks = self.committed.prove(&keys, st, &mut attest::os_rng());
        // A self-check of the proofs (34 ms for 82 of them) before the
        // bundle claims them; it also gives the totals.
        let (_, totals) = attest::verify(&keys.vk, st, &self.chunks)
            .map_err(|(i, why)| anyhow::anyhow!("internal error: chunk {i}: {why}"))?;
        for a in &self.planned.attested {
            let proved = value_of(a, &totals);
            let got = self.claimed(result, a);
            if !same(&proved, &got) {
                return Ok(Err(format!(
                    "the proofs attest `{}` = {proved}, the job computed {got}",
                    self.label(a)
                )));
            }
        }
        self.vk = Some(encoding::vk_bytes(&keys.vk));
        self.result = result.clone();
        Ok(Ok(created))
    }

    /// What `result` says of an attested output.
    fn claimed(&self, result: &Value, a: &Attested) -> Value {
        let row = match a.group {
            Some(g) => result.get(g),
            None => Some(result),
        };
        row.and_then(|r| r.get(&a.name))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// An attested output's name, with its group's key.
    fn label(&self, a: &Attested) -> String {
        match (a.group, &self.groups) {
            (Some(g), Some(groups)) => format!("{}` of group `{}", a.name, groups.keys[g]),
            _ => a.name.clone(),
        }
    }

    /// The attested outputs' names, each once.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for a in &self.planned.attested {
            if !names.contains(&a.name) {
                names.push(a.name.clone());
            }
        }
        names
    }

    /// `_meta.attestation` of the result.
    pub(crate) fn meta(&self) -> Value {
        json!({
            "attested": self.names(),
            "records": self.records(),
            "chunks": self.chunks.len(),
            "circuit": format!("{:?}", attest::CircuitKind::of(&self.planned.statement)),
            "commitment": encoding::fr_text(&self.committed.dataset()),
        })
    }

    /// The audit entry of the proofs.
    pub(crate) fn proof_entry(&self, job: u64) -> Value {
        json!({
            "job": job,
            "proofs": self.chunks.len(),
            "verifying_key_sha256": self.vk.as_deref().map(crate::audit::digest),
            "attested": self.names(),
        })
    }

    /// Writes the bundle (whole or not at all), with the log's latest
    /// checkpoint and inclusion proofs of the job's entries.
    pub(crate) fn write(
        &self,
        path: &Path,
        query: &Query,
        program: (&str, &str),
        policy_sha256: &str,
        log: &Path,
    ) -> Result<()> {
        let verified = symbiont_crypto::verify(log, &self.signer)
            .with_context(|| format!("the audit log {}", log.display()))?;
        let checkpoint = verified
            .checkpoints
            .last()
            .context("the audit log has no checkpoint")?;
        let size = checkpoint.size as usize;
        let entries: Vec<Value> = self
            .entries
            .iter()
            .filter(|i| (**i as usize) < size)
            .map(|i| {
                let i = *i as usize;
                json!({
                    "index": i,
                    "entry": BASE64.encode(&verified.bodies[i]),
                    "proof": merkle::inclusion_proof(i, &verified.leaves[..size])
                        .iter()
                        .map(|h| attest::hex(h))
                        .collect::<Vec<_>>(),
                })
            })
            .collect();
        let st = &self.planned.statement;
        let bundle = json!({
            "format": FORMAT,
            "version": VERSION,
            "program": {"file": program.0, "sha256": program.1, "agent": query.agent},
            "policy_sha256": policy_sha256,
            "signer": self.signer.to_note_key(),
            "dataset": {
                "id": self.dataset,
                "records": self.records(),
                "chunk_records": self.planned.capacity,
                "fields": self.planned.field_names,
                "chunks": self.committed.chunks.iter().map(|c| encoding::fr_text(&c.2)).collect::<Vec<_>>(),
                "commitment": encoding::fr_text(&self.committed.dataset()),
                "signed": self.note,
            },
            "statement": st,
            "attested": self.planned.attested.iter().map(|a| {
                let mut entry = json!({
                    "name": a.name,
                    "aggregate": a.kind.name(),
                    "output": a.output,
                });
                if let Some(g) = a.group {
                    entry["group"] = json!(g);
                }
                entry
            }).collect::<Vec<_>>(),
            "outputs": self.outputs(),
            "proofs": self.chunks.iter().enumerate().map(|(i, c)| json!({
                "chunk": i,
                "records": c.records,
                "outputs": c.outputs,
                "proof": attest::hex(&encoding::proof_bytes(&c.proof)),
            })).collect::<Vec<_>>(),
            "verifying_key": {
                "sha256": self.vk.as_deref().map(crate::audit::digest),
                "key": self.vk.as_deref().map(attest::hex),
            },
            "audit": {
                "checkpoint": checkpoint.note,
                "entries": entries,
            },
        });
        let mut bundle = bundle;
        if let (Some(plan), Some(groups)) = (&self.planned.grouping, &self.groups) {
            bundle["grouping"] = json!({
                "key": plan.key_name,
                "field": plan.field,
                "encoding": plan.code.name(),
                "total": groups.total,
                "groups": groups.keys.iter().zip(&groups.codes).zip(&groups.counts).map(|((key, code), count)| json!({
                    "key": key,
                    "code": code,
                    "count": count,
                })).collect::<Vec<_>>(),
            });
        }
        let text = serde_json::to_string_pretty(&bundle)? + "\n";
        crate::run::write_whole(path, text.as_bytes())
    }
}

impl Attesting {
    /// The bundle's `outputs`: the attested fields of the result, or of
    /// each group's row (with its key).
    fn outputs(&self) -> Value {
        let (Some(plan), Some(groups)) = (&self.planned.grouping, &self.groups) else {
            return Value::Object(
                self.planned
                    .attested
                    .iter()
                    .map(|a| (a.name.clone(), self.claimed(&self.result, a)))
                    .collect(),
            );
        };
        let mut rows: Vec<serde_json::Map<String, Value>> = groups
            .keys
            .iter()
            .map(|k| [(plan.key_name.clone(), k.clone())].into_iter().collect())
            .collect();
        for a in &self.planned.attested {
            let g = a.group.expect("grouped");
            rows[g].insert(a.name.clone(), self.claimed(&self.result, a));
        }
        Value::Array(rows.into_iter().map(Value::Object).collect())
    }
}

/// An attested output's value from the statement's totals.
fn value_of(a: &Attested, totals: &[u64]) -> Value {
    let count = totals[a.output];
    match a.kind {
        AggKind::Count => json!(count),
        AggKind::Sum => json!(totals[a.output + 1]),
        _ if count == 0 => Value::Null,
        _ => json!(totals[a.output + 1] as f64 / count as f64),
    }
}

/// Equal as numbers (an `avg` is a float; counts and sums are integers).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_u64(), b.as_u64()) {
        (Some(x), Some(y)) => x == y,
        _ => match (a.as_f64(), b.as_f64()) {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            _ => a == b,
        },
    }
}

/// One check `symbi verify` ran.
struct Check {
    what: String,
    failure: Option<String>,
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
/// decode).
struct Decoded {
    signer: AuditVerifyingKey,
    dataset: String,
    records: u64,
    chunks: Vec<symbiont_circuits::Fr>,
    commitment: symbiont_circuits::Fr,
    note: String,
    statement: Statement,
    proofs: Vec<Chunk>,
    vk: attest::VerifyingKey,
    vk_sha256: String,
    vk_bytes: Vec<u8>,
}

fn decode(bundle: &Value) -> Result<Decoded, String> {
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
        statement,
        proofs,
        vk,
        vk_sha256: text(bundle, "verifying_key.sha256")?.to_string(),
        vk_bytes,
    })
}

/// Runs every check of `bundle`; `key` pins the signer.
fn checks(bundle: &Value, key: Option<&AuditVerifyingKey>) -> Vec<Check> {
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
    if let Some(k) = key {
        check(
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
        );
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
        if crate::audit::digest(&d.vk_bytes) == d.vk_sha256 {
            Ok(())
        } else {
            Err("`verifying_key.sha256` is not the key's SHA-256".into())
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
                Some(g) => {
                    let key = bundle
                        .pointer(&format!("/grouping/groups/{g}/key"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    format!("output `{name}` of group {g} ({key})")
                }
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
                    let proved = value_of(
                        &Attested {
                            name: name.clone(),
                            kind,
                            output,
                            group,
                        },
                        &totals,
                    );
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
            let entry: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
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
            if kind == Some(EntryKind::Proof.as_str())
                && detail("verifying_key_sha256") == Some(d.vk_sha256.as_str())
            {
                proved = true;
            }
            Ok(())
        })();
        check(&format!("audit entry {i}"), result);
    }
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

fn read_bundle(path: &Path) -> std::result::Result<Value, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))
}

/// `symbi verify BUNDLE`: exit 0 if every check passes, 4 if one fails.
pub(crate) fn verify(path: &Path, key: Option<&Path>, json_out: bool) -> Result<u8> {
    let key = match key {
        None => None,
        Some(k) => {
            let text = std::fs::read_to_string(k)
                .with_context(|| format!("cannot read {}", k.display()))?;
            Some(
                AuditVerifyingKey::parse(text.trim())
                    .with_context(|| format!("{}", k.display()))?,
            )
        }
    };
    let results = match read_bundle(path) {
        Ok(bundle) => checks(&bundle, key.as_ref()),
        Err(why) => vec![Check {
            what: "the bundle decodes".into(),
            failure: Some(why),
        }],
    };
    let ok = results.iter().all(|c| c.failure.is_none());
    if json_out {
        let out = json!({
            "bundle": path.display().to_string(),
            "ok": ok,
            "checks": results.iter().map(|c| json!({
                "check": c.what,
                "ok": c.failure.is_none(),
                "failure": c.failure,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for c in &results {
            match &c.failure {
                None => println!("ok      {}", c.what),
                Some(why) => println!("FAILED  {}: {why}", c.what),
            }
        }
    }
    if ok {
        if !json_out {
            println!("{}: verified", path.display());
        }
        Ok(exit::OK)
    } else {
        eprintln!("symbi: {}: verification failed", path.display());
        Ok(exit::VERIFICATION_FAILED)
    }
}

/// `symbi proof export BUNDLE --format snarkjs --out DIR [--chunk N]`.
pub(crate) fn export(path: &Path, out: &Path, chunk: usize) -> Result<u8> {
    let decoded = read_bundle(path).and_then(|b| decode(&b));
    let d = match decoded {
        Ok(d) => d,
        Err(why) => {
            eprintln!("symbi: error: {why}");
            return Ok(exit::VERIFICATION_FAILED);
        }
    };
    let Some(c) = d.proofs.get(chunk) else {
        eprintln!(
            "symbi: error: the bundle has {} proofs; --chunk {chunk} is not one",
            d.proofs.len()
        );
        return Ok(exit::USAGE);
    };
    let public = match attest::chunk_public(&d.statement, c) {
        Ok(p) => p,
        Err(why) => {
            eprintln!("symbi: error: proof {chunk}: {why}");
            return Ok(exit::VERIFICATION_FAILED);
        }
    };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let files = [
        (
            "verification_key.json",
            symbiont_circuits::snarkjs::verifying_key(&d.vk),
        ),
        ("proof.json", symbiont_circuits::snarkjs::proof(&c.proof)),
        ("public.json", symbiont_circuits::snarkjs::public(&public)),
    ];
    for (name, value) in files {
        let p: PathBuf = out.join(name);
        crate::run::write_whole(
            &p,
            (serde_json::to_string_pretty(&value)? + "\n").as_bytes(),
        )?;
    }
    eprintln!(
        "symbi: wrote proof {chunk} of {} to {} (snarkjs groth16 verify verification_key.json public.json proof.json)",
        d.proofs.len(),
        out.display()
    );
    Ok(exit::OK)
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
