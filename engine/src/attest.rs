//! Attestation of a job (`symbi run --bundle`): the prover's side. The
//! auditor's side is the `symbiont-verify` crate.
//!
//! A run with `--bundle` plans the statement behind the agent's
//! `prove(...)` fields before anything runs ([`plan`]), commits to the
//! input's attested fields, which the source stage keeps as it reads the
//! records for the dataflow (one pass), and signs the commitment with the
//! audit key ([`ToCommit::commit`]), proves the statement over the committed chunks
//! once the job has its result and checks that the proofs attest exactly
//! that result ([`Attesting::prove`]), and after the job's last audit
//! checkpoint writes the bundle ([`Attesting::write`]). `docs/ATTESTATION.md`
//! describes the bundle field by field.

use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use symbiont_circuits::attest::{self, Chunk, Committed, Keys, encoding};
use symbiont_circuits::statement::{Aggregate, Comparison, Kind, Op, Statement};
use symbiont_crypto::programmable::{self as fhe, Kind as FheKind};
use symbiont_crypto::{AuditSigningKey, AuditVerifyingKey, merkle};
use symbiont_operators::{AggKind, FieldType, Format, OutExpr, Output, Query, Value as Cell};
use symbiont_verify::{FORMAT, KeyCode, VERSION, note_body, same, text_code};

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
    /// The multi-party setup whose key proves it (`--ceremony`), or none:
    /// keys set up on this machine.
    ceremony: Option<crate::ceremony::Ceremony>,
}

impl Planned {
    /// The statement and chunk size a ceremony for this plan sets up.
    pub(crate) fn ceremony_shape(&self) -> Result<(Statement, usize), String> {
        if self.grouping.is_some() {
            return Err("a grouped result's circuit depends on the groups the job finds, so no ceremony can be held for it before the job (ungrouped results can)".into());
        }
        Ok((self.statement.clone(), self.capacity))
    }

    /// Proves with `ceremony`'s key: its shape must be this statement's,
    /// and its chunk size becomes the job's.
    pub(crate) fn use_ceremony(
        &mut self,
        ceremony: crate::ceremony::Ceremony,
    ) -> Result<(), String> {
        let (statement, _) = self.ceremony_shape()?;
        if !attest::shape_ids(&statement, ceremony.capacity).contains(&ceremony.shape) {
            return Err(
                "the ceremony set up another circuit than this program's statement (`symbi ceremony new` with this program makes one)".into(),
            );
        }
        self.capacity = ceremony.capacity;
        self.ceremony = Some(ceremony);
        Ok(())
    }
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
/// A grouped result's key among the attested fields (added to
/// `schema_fields` if no aggregate reads it), and how it is encoded.
fn group_plan(
    query: &Query,
    fields: ResultFields<'_>,
    key: usize,
    schema_fields: &mut Vec<usize>,
) -> Result<GroupPlan, String> {
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
    Ok(GroupPlan {
        key_name: result_key,
        field,
        code,
    })
}

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
        Some(key) => Some(group_plan(query, fields, key, &mut schema_fields)?),
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
    let widths = widths(query, &schema_fields, &comparisons);
    let statement = Statement {
        fields: schema_fields.len(),
        comparisons,
        aggregates,
        widths,
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
        (None, attest::CircuitKind::Intervals) => {
            symbiont_circuits::intervals::capacity(&statement)
        }
        (None, attest::CircuitKind::Runs) => symbiont_circuits::runs::capacity(&statement),
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
        ceremony: None,
    })
}

/// The bits of each committed field's values: what the range its type
/// declares needs (`type Age = int with range(0, 150)`: 8), widened to
/// hold every threshold it is compared with; 32 without a range. Empty
/// when every field has 32, as statements without ranges always were.
fn widths(query: &Query, schema_fields: &[usize], comparisons: &[Comparison]) -> Vec<u32> {
    let widths: Vec<u32> = schema_fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let declared = match query.schema.range(*f) {
                Some((lo, hi)) if lo >= 0 && hi <= i64::from(u32::MAX) => {
                    (64 - hi.leading_zeros()).max(1)
                }
                _ => 32,
            };
            comparisons
                .iter()
                .filter(|c| c.field == i)
                .fold(declared, |w, c| {
                    let mut w = w;
                    while w < 32 && u64::from(c.threshold) > 1u64 << w {
                        w += 1;
                    }
                    w
                })
        })
        .collect();
    if widths.iter().all(|w| *w == 32) {
        Vec::new()
    } else {
        widths
    }
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
            widths: base.widths.clone(),
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

/// What a bundle of a job of `query` must say, re-planned by the job's own
/// planner ([`plan`]): its statement (for a grouped result, expanded over
/// the groups the bundle's `outputs` list), the attested fields' names,
/// and the attested outputs as the bundle lists them.
fn planned_bundle(query: &Query, outputs: &Value) -> Result<Value, String> {
    let mut planned = plan(query)?;
    if planned.grouping.is_some() {
        let (statement, attested, _) = planned.expand(outputs)?;
        planned.statement = statement;
        planned.attested = attested;
    }
    Ok(json!({
        "statement": planned.statement,
        "fields": planned.field_names,
        "attested": attested_list(&planned.attested),
    }))
}

/// The bundle's `attested`: each output's name, aggregate, output and
/// group.
fn attested_list(attested: &[Attested]) -> Vec<Value> {
    attested
        .iter()
        .map(|a| {
            let mut entry = json!({
                "name": a.name,
                "aggregate": a.kind.name(),
                "output": a.output,
            });
            if let Some(g) = a.group {
                entry["group"] = json!(g);
            }
            entry
        })
        .collect()
}

/// `symbi verify --program FILE`: the program is the one the job ran, and
/// the job's planner, given it, plans the bundle's statement, attested
/// fields and outputs (so a bundle whose signed statement differs from
/// what the program says is refused, whoever signed it).
pub fn program_checks(bundle: &Value, program: &Path) -> Vec<symbiont_verify::Check> {
    let mut out = Vec::new();
    let mut check = |what: &str, result: Result<(), String>| {
        out.push(symbiont_verify::Check {
            what: what.into(),
            failure: result.err(),
        })
    };
    let source = match std::fs::read_to_string(program) {
        Ok(s) => s,
        Err(e) => {
            check(
                "the program",
                Err(format!("cannot read {}: {e}", program.display())),
            );
            return out;
        }
    };
    let signed = |pointer: &str| bundle.pointer(pointer).cloned().unwrap_or(Value::Null);
    check(
        "the program is the one the job ran",
        if signed("/program/sha256") == crate::digest(source.as_bytes()) {
            Ok(())
        } else {
            Err(format!(
                "{} is not the program the bundle names (SHA-256)",
                program.display()
            ))
        },
    );
    let agent = bundle.pointer("/program/agent").and_then(Value::as_str);
    let planned = match symbiont_dsl::parse(&source) {
        (Some(p), diagnostics) if diagnostics.is_empty() => {
            symbiont_dsl::runnable(&p, &source, agent)
                .map_err(|r| {
                    format!(
                        "{} cannot run: {} diagnostics",
                        program.display(),
                        r.diagnostics.len()
                    )
                })
                .and_then(|query| planned_bundle(&query, &signed("/outputs")))
        }
        _ => Err(format!("{} does not parse", program.display())),
    };
    let planned = match planned {
        Ok(p) => p,
        Err(why) => {
            check("the program's statement", Err(why));
            return out;
        }
    };
    for (what, ours, theirs) in [
        ("the program's statement", "/statement", "/statement"),
        (
            "the program's attested fields",
            "/fields",
            "/dataset/fields",
        ),
        ("the program's attested outputs", "/attested", "/attested"),
    ] {
        check(
            what,
            if planned.pointer(ours) == bundle.pointer(theirs) {
                Ok(())
            } else {
                Err(format!(
                    "the bundle's is not what {} plans",
                    program.display()
                ))
            },
        );
    }
    out
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
    provenance: Provenance,
}

/// How a committed field's value enters the commitment: an `int` in
/// 0..2^32 as itself, a `bool` as 0 or 1, a string (only a group key is
/// one) as its text code; `None` for anything else.
pub(crate) fn attested_value(cell: &Cell) -> Option<u32> {
    match cell {
        Cell::Int(v) => u32::try_from(*v).ok(),
        Cell::Bool(b) => Some(u32::from(*b)),
        Cell::Str(s) => Some(text_code(s)),
        _ => None,
    }
}

/// What a job with `--bundle` commits to once its source has read the
/// input: the plan, the dataset and the key that signs the commitment.
pub(crate) struct ToCommit {
    planned: Planned,
    dataset: String,
    key: AuditSigningKey,
    provenance: Provenance,
}

/// Where a job's result comes from, as its bundle names it (and the owner
/// signs with the proofs).
#[derive(Clone, Debug)]
pub(crate) struct Provenance {
    /// The program file, as given.
    pub file: String,
    /// Its SHA-256.
    pub sha256: String,
    /// The entry agent.
    pub agent: String,
    /// The SHA-256 of the policies the job answers to.
    pub policy_sha256: String,
}

/// The ingestion side's plan: which fields of `input` the source stage
/// keeps for the commitment, as it reads the records for the dataflow
/// ([`crate::JobConfig::commit`]); or why `input` cannot be attested.
pub(crate) fn to_commit(
    planned: Planned,
    input: &Path,
    dataset: &str,
    key: AuditSigningKey,
    provenance: Provenance,
) -> std::result::Result<ToCommit, String> {
    if Format::of_path(input).is_none() {
        return Err(format!(
            "{}: attestation reads a .csv, .ndjson, .parquet or .arrow file",
            input.display()
        ));
    }
    Ok(ToCommit {
        planned,
        dataset: dataset.to_owned(),
        key,
        provenance,
    })
}

impl ToCommit {
    /// The schema indices of the committed fields, in statement order.
    pub(crate) fn fields(&self) -> &[usize] {
        &self.planned.fields
    }

    /// Commits to `values` (the committed fields of every record the job
    /// read, in order) in chunks, and signs the commitment.
    pub(crate) fn commit(self, values: &[u32]) -> Attesting {
        let ToCommit {
            planned,
            dataset,
            key,
            provenance,
        } = self;
        let fields = planned.statement.fields;
        // A grouping's statement (`key == code` per group) is known only
        // after the job; the general circuit proves it.
        let kind = match (&planned.grouping, &planned.ceremony) {
            (Some(_), _) => attest::CircuitKind::General,
            // A ceremony held for the general circuit (before the interval
            // circuit existed) proves in its layout.
            (None, Some(ceremony)) => ceremony.kind,
            (None, None) => attest::CircuitKind::of(&planned.statement),
        };
        let committed = Committed::new(kind, &planned.statement, values, planned.capacity);
        let records = values.len() / fields;
        let note = key.sign_note(&note_body(
            &dataset,
            records as u64,
            &committed.chunks.iter().map(|c| c.2).collect::<Vec<_>>(),
            &committed.dataset(),
        ));
        Attesting {
            planned,
            committed,
            dataset,
            note,
            signer: key.verifying_key(),
            chunks: Vec::new(),
            vk: None,
            entries: Vec::new(),
            result: Value::Null,
            groups: None,
            provenance,
        }
    }
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
        let kind = self.committed.kind;
        if !kind.proves(st) {
            return Ok(Err(format!(
                "the records were committed for the {kind:?} circuit, which cannot prove this statement for a verifier"
            )));
        }
        let (keys, created) = match &self.planned.ceremony {
            Some(ceremony) => (ceremony.keys()?, false),
            None => Keys::load_or_setup_for(kind, keys_dir, st, self.planned.capacity)
                .with_context(|| format!("the proving keys in {}", keys_dir.display()))?,
        };
        self.chunks = self.committed.prove(&keys, st, &mut attest::os_rng());
        // A self-check of the proofs (34 ms for 82 of them) before the
        // bundle claims them; it also gives the totals.
        let (_, totals) = attest::verify(&keys.vk, st, &self.chunks)
            .map_err(|(i, why)| anyhow::anyhow!("internal error: chunk {i}: {why}"))?;
        for a in &self.planned.attested {
            let proved = symbiont_verify::value_of(a.kind, a.output, &totals);
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
            "circuit": format!("{:?}", self.committed.kind),
            "commitment": encoding::fr_text(&self.committed.dataset()),
            "setup": if self.planned.ceremony.is_some() { "ceremony" } else { "this machine" },
        })
    }

    /// The audit entry of the proofs: with the SHA-256 of each part of
    /// the bundle's claim ([`symbiont_verify::claim`]), which the owner
    /// signs with it.
    pub(crate) fn proof_entry(&self, job: u64) -> Result<Value> {
        // Hashed as the verifier will read it: written, then parsed (a
        // float's last digit as the parser reads it back).
        let body: Value = serde_json::from_str(&serde_json::to_string_pretty(&self.body())?)?;
        let claim = symbiont_verify::claim_digests(&body)
            .map_err(|why| anyhow::anyhow!("internal error: the bundle's claim: {why}"))?;
        Ok(json!({
            "job": job,
            "proofs": self.chunks.len(),
            "verifying_key_sha256": self.vk.as_deref().map(crate::digest),
            "attested": self.names(),
            "claim": claim,
        }))
    }

    /// Writes the bundle (whole or not at all), with the log's latest
    /// checkpoint and inclusion proofs of the job's entries.
    pub(crate) fn write(&self, path: &Path, log: &Path) -> Result<()> {
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
        let mut bundle = self.body();
        bundle["audit"] = json!({
            "checkpoint": checkpoint.note,
            "entries": entries,
        });
        let text = serde_json::to_string_pretty(&bundle)? + "\n";
        crate::files::write_whole(path, text.as_bytes())
    }

    /// The bundle but its audit section: everything the owner signs with
    /// the proofs.
    fn body(&self) -> Value {
        let st = &self.planned.statement;
        let p = &self.provenance;
        let bundle = json!({
            "format": FORMAT,
            "version": VERSION,
            "program": {"file": p.file, "sha256": p.sha256, "agent": p.agent},
            "policy_sha256": p.policy_sha256,
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
            "attested": attested_list(&self.planned.attested),
            "outputs": self.outputs(),
            "proofs": self.chunks.iter().enumerate().map(|(i, c)| json!({
                "chunk": i,
                "records": c.records,
                "outputs": c.outputs,
                "proof": attest::hex(&encoding::proof_bytes(&c.proof)),
            })).collect::<Vec<_>>(),
            "verifying_key": {
                "sha256": self.vk.as_deref().map(crate::digest),
                "key": self.vk.as_deref().map(attest::hex),
                "shape": attest::shape_id_for(self.committed.kind, st, self.planned.capacity),
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
        bundle
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
