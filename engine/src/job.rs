//! Batch jobs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::graph::{EpochStages, Shared, run_worker};

use symbiont_crypto::additive::Reduced;
use symbiont_crypto::programmable::{self, Encrypted, Spec};
use symbiont_crypto::{DataKeys, Keystore, KeystoreError, LockStatus, Opener, SealContext, Sealer};
use symbiont_operators::{
    AfterError, AggKey, AggregateError, ColumnKey, Compiled, Format, GROUP_KEYS, InputKind,
    LANE_COUNT, Lane, LaneImpl, LaneOpener, Ledger, Merged, PackSink, PackedList, Partial,
    PartialUpdate, Plain, Plan, Query, Record, Routed, RowError, Schema, SealedBatch, Source,
    SourceError, StoreReader, StoreWriter, Value, assemble, decrypted_partials, is_store,
    record_values, seal_records,
};

/// What to do with a row that cannot be processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnError {
    /// Stop the job, naming the row (the default).
    Fail,
    /// Write the row's line and reason to this file and go on.
    Quarantine(PathBuf),
}

/// How to run a job.
#[derive(Clone, Debug)]
pub struct JobConfig {
    /// The dataset file bound to the query's stream parameter.
    pub input: PathBuf,
    /// Worker threads.
    pub workers: usize,
    /// Bad-row handling.
    pub on_error: OnError,
    /// Counts rows read as the job goes, for a progress display.
    pub progress: Option<Arc<AtomicU64>>,
    /// The keys of the encrypted lanes, split by stage.
    pub keys: LaneKeys,
    /// Keep the classified dataset here, encrypted lanes sealed (a
    /// directory that must not exist; written only if the job succeeds).
    pub persist: Option<PathBuf>,
    /// Where the encrypted lanes are opened and aggregated: in this process
    /// (`None`, with [`LaneKeys::opener`]) or by a sandboxed stage.
    pub sealed_stage: Option<Arc<dyn SealedStage>>,
    /// Lanes (in [`Lane::ALL`] order) whose records a policy condition
    /// forbids (`data_classification`): the first such record suspends
    /// the job, which then ends without a result.
    pub forbidden_lanes: [bool; 3],
    /// The homomorphic lane's additive path: restricted records of a file
    /// input are packed and encrypted here, reduced by its compute stage
    /// and decrypted by its key holder. Without it, they are sealed with
    /// AES-256-GCM like confidential ones.
    pub homomorphic: Option<HomomorphicLane>,
    /// With `persist`: the programmable path's public key, under which
    /// each restricted record's numeric fields are also kept as TFHE
    /// integer ciphertexts (`tfhe.bin`).
    pub persist_tfhe: Option<Arc<programmable::PublicKey>>,
    /// The homomorphic lane's programmable path over a stored dataset's
    /// TFHE copy (`--input NAME=tfhe:DIR`): its restricted records are read
    /// from `tfhe.bin` instead of their sealed batches.
    pub programmable: Option<ProgrammableLane>,
    /// The schema indices of the fields an attestation commits to: the
    /// source stage keeps their values, in record order, as it reads the
    /// records for the dataflow ([`JobOutput::attested`]), so the input
    /// is not read again for the commitment.
    pub commit: Option<Vec<usize>>,
    /// The files the dataset carries ([`symbiont_operators::CARRIED_FILES`]),
    /// as the job read them: a stored input must carry these very files
    /// (its manifest lists their digests), and a persisted copy carries
    /// them.
    pub carried: Vec<(&'static str, crate::Carried)>,
}

/// The programmable path's roles: the compute stage holds the server key,
/// the key holder the client key.
#[derive(Clone, Debug)]
pub struct ProgrammableLane {
    /// The query's aggregates, compiled for the compute stage.
    pub compiled: Compiled,
    /// Compute: evaluates the spec over the ciphertexts.
    pub stage: Arc<dyn ProgrammableStage>,
    /// Decrypts the aggregates.
    pub key_holder: Arc<dyn KeyHolder>,
}

/// The programmable path's compute stage: ciphertexts and the server key
/// in, encrypted aggregates out; it holds no client key.
pub trait ProgrammableStage: Send + Sync + std::fmt::Debug {
    /// Evaluates `spec` over `records` (one compact list each); with the
    /// stage's sandbox report, if it ran in one.
    fn evaluate(
        &self,
        spec: &Spec,
        records: Vec<Vec<u8>>,
    ) -> Result<(Vec<Encrypted>, Option<serde_json::Value>), String>;
}

/// The programmable compute stage in this process, with the server key of
/// the keystore in `dir`.
#[derive(Clone, Debug)]
pub struct InProcessEvaluate {
    /// The keystore directory.
    pub dir: PathBuf,
}

impl ProgrammableStage for InProcessEvaluate {
    fn evaluate(
        &self,
        spec: &Spec,
        records: Vec<Vec<u8>>,
    ) -> Result<(Vec<Encrypted>, Option<serde_json::Value>), String> {
        let server = Keystore::programmable_server_key(&self.dir).map_err(|e| e.to_string())?;
        programmable::evaluate(&server, &records, spec)
            .map(|r| (r, None))
            .map_err(|e| e.to_string())
    }
}

/// The three roles of the homomorphic lane's additive path
/// (`docs/FHE.md`): ingestion holds the public key, the compute stage no
/// key, the key holder the secret key.
#[derive(Clone, Debug)]
pub struct HomomorphicLane {
    /// Ingestion: the public key, and where packers hand their lists.
    pub sink: Arc<PackSink>,
    /// Compute: adds and reduces the lists.
    pub stage: Arc<dyn HomomorphicStage>,
    /// Decrypts the reduced columns.
    pub key_holder: Arc<dyn KeyHolder>,
}

/// The homomorphic lane's compute stage: ciphertexts in, reduced
/// ciphertexts out; it holds no key.
pub trait HomomorphicStage: Send + Sync + std::fmt::Debug {
    /// Starts the stage: the dataflow hands the feed each column's lists
    /// as the packers fill them, then finishes it. A feed dropped
    /// unfinished (the job failed or was suspended) abandons the stage.
    fn start(&self, epoch: u64) -> Box<dyn ListFeed>;

    /// Ends a stage that lives across a stream's epochs, once the last
    /// has finished: its sandbox reports, or why it did not end cleanly.
    fn close(&self) -> Result<Vec<serde_json::Value>, String> {
        Ok(Vec::new())
    }
}

/// Reduced columns, and the compute stage's sandbox report for
/// `_meta.sandboxes` if it ran in one.
pub type ReducedColumns = (Vec<(ColumnKey, Reduced)>, Option<serde_json::Value>);

/// A started [`HomomorphicStage`], fed while the dataflow runs.
pub trait ListFeed: Send + Sync {
    /// Hands the stage lists to add; waits while the stage is behind. A
    /// stage that has ended takes nothing more, and
    /// [`ListFeed::finish`] says why it ended.
    fn send(&self, lists: Vec<PackedList>);
    /// Ends the stage's input; each column it was handed, reduced.
    fn finish(&self) -> Result<ReducedColumns, String>;
}

/// A started compute stage and the ledger of every list sent to it: what
/// the key holder will take back.
pub(crate) struct SentFeed {
    feed: Box<dyn ListFeed>,
    ledger: Mutex<Result<Ledger, String>>,
}

impl SentFeed {
    pub(crate) fn new(feed: Box<dyn ListFeed>) -> SentFeed {
        SentFeed {
            feed,
            ledger: Mutex::new(Ok(Ledger::default())),
        }
    }

    /// Records `lists`, then hands them to the stage.
    pub(crate) fn send(&self, lists: Vec<PackedList>) {
        {
            let mut ledger = self.ledger.lock().expect("no panic holding it");
            if let Ok(l) = ledger.as_mut()
                && let Some(e) = lists.iter().find_map(|list| l.record(list).err())
            {
                *ledger = Err(e.to_string());
            }
        }
        self.feed.send(lists);
    }

    /// The stage's answer and what was sent to it.
    pub(crate) fn finish(&self) -> Result<(ReducedColumns, Ledger), String> {
        let answer = self.feed.finish()?;
        let ledger = std::mem::replace(
            &mut *self.ledger.lock().expect("no panic holding it"),
            Err("the stage was finished".into()),
        )?;
        Ok((answer, ledger))
    }
}

/// The homomorphic lane's compute stage in this process.
#[derive(Clone, Copy, Debug, Default)]
pub struct InProcessReduce;

impl HomomorphicStage for InProcessReduce {
    fn start(&self, _epoch: u64) -> Box<dyn ListFeed> {
        Box::new(Mutex::new(Ok(symbiont_operators::Reducer::default())))
    }
}

/// [`InProcessReduce`]'s running sums, or the first error.
impl ListFeed for Mutex<Result<symbiont_operators::Reducer, String>> {
    fn send(&self, lists: Vec<PackedList>) {
        let mut reducer = self.lock().expect("no panic holding it");
        for list in &lists {
            let added = match reducer.as_mut() {
                Ok(r) => r.add(list).map_err(|e| e.to_string()),
                Err(_) => return,
            };
            if let Err(e) = added {
                *reducer = Err(e);
            }
        }
    }

    fn finish(&self) -> Result<ReducedColumns, String> {
        let reducer = std::mem::replace(
            &mut *self.lock().expect("no panic holding it"),
            Err("the stage was finished".into()),
        );
        reducer.map(|r| (r.finish(), None))
    }
}

/// The key holder: decrypts reduced columns into their totals.
pub trait KeyHolder: Send + Sync + std::fmt::Debug {
    /// The totals of `reduced`, which must be exactly the reduction of
    /// the lists the job sent (`sent`, [`Ledger::check`]): anything else
    /// is refused before the key is read (`docs/FHE.md`, the key holder
    /// as an oracle).
    fn decrypt(
        &self,
        reduced: &[(ColumnKey, Reduced)],
        sent: &Ledger,
    ) -> Result<Vec<(ColumnKey, i128)>, String>;

    /// Agrees to decrypt the answer of `spec` over `records` records,
    /// before the compute stage runs: a key holder with a decryption
    /// budget charges it here ([`programmable::leaked_bits`]) and refuses
    /// past it. The id of the key charged, which
    /// [`KeyHolder::decrypt_programmable`] must decrypt under.
    fn reserve_programmable(&self, spec: &Spec, records: u64) -> Result<String, String>;

    /// The (count, value) of each aggregate of `spec`, evaluated over
    /// `records` records: only an answer of the plan's shape is decrypted,
    /// and only values those records can give are returned
    /// ([`programmable::decrypt`]).
    fn decrypt_programmable(
        &self,
        results: &[Encrypted],
        spec: &Spec,
        records: u64,
        reserved: &str,
    ) -> Result<Vec<(i64, Option<i64>)>, String>;
}

/// The key holder of a keystore: reads the secret key from its `tfhe/`
/// only when asked to decrypt, and drops (wipes) it after.
#[derive(Clone, Debug)]
pub struct KeystoreHolder {
    /// The keystore directory.
    pub dir: PathBuf,
}

impl KeyHolder for KeystoreHolder {
    fn decrypt(
        &self,
        reduced: &[(ColumnKey, Reduced)],
        sent: &Ledger,
    ) -> Result<Vec<(ColumnKey, i128)>, String> {
        sent.check(reduced).map_err(|e| e.to_string())?;
        let key = Keystore::additive_secret_key(&self.dir).map_err(|e| e.to_string())?;
        reduced
            .iter()
            .map(|(column, r)| {
                let total = key.decrypt(r).map_err(|e| e.to_string())?;
                if !r.reachable(total) {
                    return Err(format!(
                        "the compute stage returned a column of aggregate {} ({:?}) whose total no sum of the lists sent can reach: refused, nothing of it published",
                        column.0, column.2
                    ));
                }
                Ok((column.clone(), total))
            })
            .collect()
    }

    /// Charges the job's [`programmable::leaked_bits`] to the key's
    /// budget in the keystore.
    fn reserve_programmable(&self, spec: &Spec, records: u64) -> Result<String, String> {
        Keystore::spend_programmable_budget(&self.dir, programmable::leaked_bits(spec, records))
            .map_err(|e| e.to_string())
    }

    fn decrypt_programmable(
        &self,
        results: &[Encrypted],
        spec: &Spec,
        records: u64,
        reserved: &str,
    ) -> Result<Vec<(i64, Option<i64>)>, String> {
        let key =
            Keystore::programmable_client_key_of(&self.dir, reserved).map_err(|e| e.to_string())?;
        programmable::decrypt(&key, results, spec, records).map_err(|e| e.to_string())
    }
}

impl LaneKeys {
    /// The keys of `dataset`'s records of `schema`, from `keystore`: the
    /// sealer reserves nonces there (making the dataset's data key on first
    /// use); the opener gets the data keys the dataset has, and each new
    /// one the sealer takes.
    pub fn for_dataset(
        keystore: Arc<Keystore>,
        dataset: &str,
        schema: &Schema,
    ) -> Result<LaneKeys, KeystoreError> {
        let fields: Vec<&str> = schema.fields.iter().map(|(n, _)| n.as_str()).collect();
        let context = SealContext::new(dataset, &fields);
        let keys = Arc::new(DataKeys::new(keystore.data_keys(dataset)?));
        let sealer = Sealer::new(context.clone(), keystore).publishing_to(Arc::clone(&keys));
        Ok(LaneKeys {
            sealer: Some(Arc::new(sealer)),
            opener: Some(Arc::new(LaneOpener::new(Opener::sharing(context, keys)))),
        })
    }
}

/// What a sandboxed decrypting stage returns.
#[derive(Clone, Debug, Default)]
pub struct StageOutput {
    /// Partial aggregates, as the in-process operator would emit them.
    pub partials: Vec<(AggKey, Partial)>,
    /// Per-record errors.
    pub errors: Vec<RowError>,
    /// Sealed batches that did not open (fatal).
    pub failures: Vec<RowError>,
    /// Whether its buffer was locked into RAM (`mlock`, `not locked: ...`).
    pub memory_lock: Option<String>,
    /// One object per sandbox it ran: its tier, the batches it was given,
    /// and how long it took to answer and to end (`_meta.sandboxes`).
    pub sandboxes: Vec<serde_json::Value>,
}

/// The aggregation of the encrypted lanes, run outside the job's process
/// (in a sandbox tier): it receives the sealed batches, never plaintext,
/// and returns partial aggregates. When it gives the public lane a tier
/// above 0, public records are sealed at classify and handed to it too.
pub trait SealedStage: Send + Sync + std::fmt::Debug {
    /// The sandbox tier the stage of `lane` runs in (0: this process).
    fn tier(&self, lane: Lane) -> u8;
    /// Starts the stage of `epoch` for `query`: the dataflow hands the
    /// feed each sealed batch of that epoch as it makes it, then finishes
    /// it at the epoch's end. A feed dropped unfinished (the job failed or
    /// was suspended) abandons the stage, which then opens nothing more.
    fn start(&self, query: &Query, epoch: u64) -> Box<dyn SealedFeed>;

    /// Ends a stage that lives across a stream's epochs, once the last
    /// has finished: its sandbox reports, or why it did not end cleanly.
    fn close(&self) -> Result<Vec<serde_json::Value>, String> {
        Ok(Vec::new())
    }
}

/// A started [`SealedStage`], fed while the dataflow runs.
pub trait SealedFeed: Send + Sync {
    /// Hands the stage a batch; waits while the stage is behind (the
    /// dataflow's backpressure). A stage that has ended takes nothing
    /// more, and [`SealedFeed::finish`] says why it ended.
    fn send(&self, batch: SealedBatch);
    /// Ends the stage's input; its answer (the partials of every batch it
    /// was handed), or why it has none.
    fn finish(&self) -> Result<StageOutput, String>;
}

/// What each stage of a job holds: the classify stage a [`Sealer`] (data
/// keys and nonce reservations of the input's dataset), the aggregation
/// stage a [`LaneOpener`] (the dataset's data keys). Neither holds the
/// master key. Without them, a confidential record fails the job: nothing
/// falls back to plaintext.
#[derive(Clone, Debug, Default)]
pub struct LaneKeys {
    /// Seals the confidential lane at classify.
    pub sealer: Option<Arc<Sealer>>,
    /// Opens it in the aggregation stage.
    pub opener: Option<Arc<LaneOpener>>,
}

/// Why a job failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The source cannot be read.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// A row is invalid (and bad rows are not quarantined).
    #[error("{path}:{row}")]
    Row {
        /// The input file.
        path: PathBuf,
        /// The first bad row.
        row: RowError,
    },
    /// The result cannot be computed (e.g. an integer sum overflows).
    #[error("{0}")]
    Aggregate(#[from] AggregateError),
    /// The quarantine file cannot be written.
    #[error("cannot write the quarantine file {path}: {source}")]
    Quarantine {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input's format is not known from its extension.
    #[error("{}: unknown format; the extension must be .csv, .ndjson, .jsonl, .parquet, .arrow, .ipc or .feather", .0.display())]
    UnknownFormat(PathBuf),
    /// The dataflow runtime failed.
    #[error("the dataflow failed: {0}")]
    Dataflow(String),
    /// A sealed batch did not open: altered, moved, truncated, or the
    /// wrong key. Fatal even when bad rows are quarantined.
    #[error("{path}:{row}")]
    Integrity {
        /// The input.
        path: PathBuf,
        /// The first record of the first batch that failed.
        row: RowError,
    },
    /// A record of a lane a policy forbids was seen: the stage is
    /// suspended and the job ends without a result.
    #[error(
        "{path}:line {line}: a record classified {class} reached a stage whose policy forbids it"
    )]
    Suspended {
        /// The input.
        path: PathBuf,
        /// The first such record.
        line: u64,
        /// Its lane.
        lane: Lane,
        /// Its class (`public`, `confidential`, `restricted`).
        class: &'static str,
    },
    /// The sandboxed stage failed.
    #[error("the sandboxed decrypting stage failed: {0}")]
    Stage(String),
    /// The homomorphic lane's compute stage or key holder failed (over the
    /// noise budget, a malformed ciphertext, no key): no result.
    #[error("the homomorphic lane failed: {0}")]
    Homomorphic(String),
    /// The program asks the homomorphic lane for what its additive path
    /// cannot compute.
    #[error("{0}")]
    Unsupported(String),
    /// `persist` needs the sealer's dataset id, and there is no sealer.
    #[error("--persist-encrypted needs the keystore: the job has no sealer")]
    PersistWithoutKeys,
    /// The persisted dataset cannot be written.
    #[error("cannot persist the encrypted dataset: {0}")]
    Persist(SourceError),
    /// A value the attestation must commit to cannot be committed (by
    /// line and field, never the value).
    #[error("--bundle: {0}")]
    Attest(String),
}

/// A finished job's result and what it saw.
#[derive(Clone, Debug, PartialEq)]
pub struct JobOutput {
    /// The entry agent's returned value.
    pub value: serde_json::Value,
    /// Records per lane, in [`Lane::ALL`] order.
    pub lanes: [u64; 3],
    /// Data rows in the input.
    pub rows: u64,
    /// Rows written to the quarantine file.
    pub quarantined: u64,
    /// Worker threads used.
    pub workers: usize,
    /// Whether the buffers confidential batches were opened into were
    /// locked into RAM (`None`: none was opened).
    pub memory_lock: Option<LockStatus>,
    /// Where the classified dataset was persisted.
    pub persisted: Option<PathBuf>,
    /// The persisted dataset's seal (hex), as written.
    pub persisted_seal: Option<String>,
    /// The lane every record was raised to at least, by a policy's
    /// encryption requirement.
    pub min_lane: Lane,
    /// The sandboxes the job's stages ran in ([`StageOutput::sandboxes`]).
    pub sandboxes: Vec<serde_json::Value>,
    /// What the job read: a file, a stored dataset, or its TFHE copy.
    pub input: InputKind,
    /// Hex SHA-256 of the input file, when the source took it as it read
    /// (CSV and NDJSON: the scan that divides the file among the workers).
    pub input_sha256: Option<String>,
    /// With [`JobConfig::commit`]: the committed fields' values of every
    /// record read, in the file's order, `fields` per record.
    pub attested: Option<Vec<u32>>,
    /// Each plan node that ran, by stage name, and what the engine built
    /// for it: `dataflow operator`, `stage`, or `held at route` (the
    /// aggregation of a lane a policy forbids, which `route` holds).
    pub built: Vec<(String, &'static str)>,
}

impl JobOutput {
    /// The `_meta` object of `symbi run --format json`.
    pub fn meta(&self) -> serde_json::Value {
        let lanes: serde_json::Map<String, serde_json::Value> = Lane::ALL
            .iter()
            .map(|l| (l.name().to_owned(), self.lanes[l.index()].into()))
            .collect();
        let lane_impl: serde_json::Map<String, serde_json::Value> = Lane::ALL
            .iter()
            .map(|l| {
                (
                    l.name().to_owned(),
                    LaneImpl::for_input(*l, self.input).name().into(),
                )
            })
            .collect();
        serde_json::json!({
            "lanes": lanes,
            "lane_impl": lane_impl,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "workers": self.workers,
            "persisted": self.persisted.as_ref().map(|p| p.display().to_string()),
            "min_lane": self.min_lane.name(),
            "sandboxes": self.sandboxes,
            "built": self
                .built
                .iter()
                .map(|(stage, kind)| (stage.clone(), serde_json::Value::from(*kind)))
                .collect::<serde_json::Map<_, _>>(),
            "memory_lock": match &self.memory_lock {
                None => serde_json::Value::Null,
                Some(LockStatus::Locked) => "mlock".into(),
                Some(LockStatus::Unlocked(why)) => format!("not locked: {why}").into(),
                Some(LockStatus::Empty) => "none".into(),
            },
        })
    }
}

/// What the workers hand back.
#[derive(Default)]
pub(crate) struct Collected {
    pub partials: Vec<(AggKey, Partial)>,
    pub errors: Vec<RowError>,
    pub rows: u64,
    pub source_error: Option<SourceError>,
    pub persist_error: Option<SourceError>,
    /// The sealed batches of each lane that left the dataflow for the
    /// sandboxed stage (or were withheld from it).
    pub sealed_lanes: [u64; 3],
    /// The first record (line) of each forbidden lane seen.
    pub forbidden_seen: [Option<u64>; 3],
    /// Each worker's committed values, by part.
    pub attested: Vec<(usize, AttestedPart)>,
    /// Their merge, in the input's order.
    attested_values: Option<Vec<u32>>,
    /// The workers that have reported the end of the epoch.
    pub reported: usize,
    /// Why the job ended at the end of the epoch.
    pub ended: Option<JobError>,
    /// What each node of the plan that runs became (the first worker's
    /// to build it; every worker builds the same).
    pub built: Vec<(String, &'static str)>,
    /// The stages' memory lock and sandbox reports.
    stage_lock: Option<String>,
    pub sandboxes: Vec<serde_json::Value>,
}

/// The committed fields' values of the records one worker read, with
/// their lines (to put the parts back in the file's order), and the first
/// value that cannot be committed.
#[derive(Debug, Default)]
pub(crate) struct AttestedPart {
    values: Vec<u32>,
    lines: Vec<u64>,
    bad: Option<(u64, usize)>,
}

impl AttestedPart {
    pub(crate) fn take(&mut self, record: &Record, fields: &[usize]) {
        if self.bad.is_some() {
            return;
        }
        for &f in fields {
            match record.values.get(f).and_then(crate::attest::attested_value) {
                Some(v) => self.values.push(v),
                None => {
                    self.values.truncate(self.lines.len() * fields.len());
                    self.bad = Some((record.line, f));
                    return;
                }
            }
        }
        self.lines.push(record.line);
    }
}

/// The workers' committed values in the file's order (each part's lines
/// rise; parts are merged by line), or the first value that cannot be
/// committed.
fn merge_attested(
    mut parts: Vec<(usize, AttestedPart)>,
    fields: &[usize],
    query: &Query,
    input: &Path,
) -> Result<Vec<u32>, String> {
    if let Some((line, f)) = parts.iter().filter_map(|(_, p)| p.bad).min() {
        return Err(format!(
            "{}:line {line}: field `{}`: attestation covers values in 0..2^32, this one is not",
            input.display(),
            query.schema.fields[f].0
        ));
    }
    parts.sort_by_key(|(part, _)| *part);
    let width = fields.len();
    let total: usize = parts.iter().map(|(_, p)| p.lines.len()).sum();
    let mut values = Vec::with_capacity(total * width);
    let mut next = vec![0usize; parts.len()];
    for _ in 0..total {
        let (k, i) = next
            .iter()
            .enumerate()
            .filter(|(k, i)| **i < parts[*k].1.lines.len())
            .min_by_key(|(k, i)| parts[*k].1.lines[**i])
            .map(|(k, i)| (k, *i))
            .expect("records remain");
        values.extend_from_slice(&parts[k].1.values[i * width..(i + 1) * width]);
        next[k] += 1;
    }
    Ok(values)
}

/// Where the job's records come from.
pub(crate) enum JobInput {
    /// A file of records, classified by the job.
    Records(Source),
    /// A persisted dataset, already classified.
    Store(Box<StoreReader>),
    /// Records a stream's reader types and the stream's worker sends
    /// ([`crate::stream`]).
    Stream,
}

/// A persisted dataset being written into a temporary directory beside its
/// destination; renamed into place only when the job succeeds.
pub(crate) struct Persist {
    writer: Option<StoreWriter>,
    partial: PathBuf,
    dest: PathBuf,
}

impl Drop for Persist {
    fn drop(&mut self) {
        // Still here: the job failed, or `finish` did. Leave nothing.
        let _ = std::fs::remove_dir_all(&self.partial);
    }
}

fn partial_dir(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    dest.with_file_name(name)
}

/// The job's input, opened and checked against the query's schema.
fn open_input(query: &Query, config: &JobConfig, workers: usize) -> Result<JobInput, JobError> {
    let input = if is_store(&config.input) {
        let store = StoreReader::open(&config.input, &query.schema)?;
        let Some(opener) = &config.keys.opener else {
            return Err(JobError::Source(SourceError::Malformed {
                path: config.input.clone(),
                reason: "a stored dataset is read only with its dataset's keys (no keystore)"
                    .into(),
            }));
        };
        store.authenticate(opener.opener(), &carried_digests(&config.carried))?;
        JobInput::Store(Box::new(store))
    } else {
        let format = Format::of_path(&config.input)
            .ok_or_else(|| JobError::UnknownFormat(config.input.clone()))?;
        JobInput::Records(Source::open(&config.input, format, &query.schema, workers)?)
    };
    if let (JobInput::Records(_), Some(_), Some(spec)) =
        (&input, &config.homomorphic, query.beyond_additive())
        && query.may_route(Lane::Homomorphic)
    {
        return Err(JobError::Unsupported(format!(
            "`{}` over restricted records: the homomorphic lane's additive path computes count, sum and avg only; min and max over restricted records run on the programmable path: persist the dataset (--persist-encrypted DIR) and read it with --input NAME=tfhe:DIR",
            spec.label
        )));
    }
    Ok(input)
}

/// The persisted dataset's writer, into a temporary directory beside its
/// destination (`--persist-encrypted`).
fn start_persist(config: &JobConfig) -> Result<Option<Arc<Mutex<Persist>>>, JobError> {
    let Some(dest) = &config.persist else {
        return Ok(None);
    };
    if config.keys.sealer.is_none() {
        return Err(JobError::PersistWithoutKeys);
    }
    let partial = partial_dir(dest);
    let _ = std::fs::remove_dir_all(&partial);
    let mut writer = StoreWriter::create(&partial).map_err(JobError::Persist)?;
    if let Some(key) = &config.persist_tfhe {
        writer.with_tfhe(key.id()).map_err(JobError::Persist)?;
    }
    Ok(Some(Arc::new(Mutex::new(Persist {
        writer: Some(writer),
        partial,
        dest: dest.clone(),
    }))))
}

/// Writes one batch of routed records into the persisted dataset: public
/// records in the clear, restricted ones sealed (and, with `tfhe_key`,
/// as TFHE ciphertexts), sealed batches as they are. The first error stops
/// the writer and is kept for the job.
pub(crate) fn persist_batch(
    persist: &Mutex<Persist>,
    sealer: Option<&Sealer>,
    tfhe_key: Option<&programmable::PublicKey>,
    schema: &Schema,
    batch: &[Routed],
) -> Result<(), SourceError> {
    // The TFHE copy of the restricted records, encrypted before the
    // writer is locked.
    let tfhe: Result<Vec<(u64, Vec<u8>)>, SourceError> = match tfhe_key {
        None => Ok(Vec::new()),
        Some(key) => batch
            .iter()
            .filter_map(|r| match r {
                Routed::Clear(Lane::Homomorphic, record) => Some(record),
                _ => None,
            })
            .map(|record| {
                let fail = |reason: String| SourceError::Malformed {
                    path: PathBuf::from("tfhe.bin"),
                    reason: format!(
                        "line {}: the restricted record cannot be kept as TFHE ciphertexts: {reason}",
                        record.line
                    ),
                };
                let values = record_values(schema, &record.values).map_err(fail)?;
                key.encrypt(&values)
                    .map(|list| (record.line, list))
                    .map_err(|e| fail(e.to_string()))
            })
            .collect(),
    };
    let mut p = persist.lock().expect("no worker panicked holding the lock");
    let Some(writer) = p.writer.as_mut() else {
        return Ok(());
    };
    let clear: Vec<&Record> = batch
        .iter()
        .filter_map(|r| match r {
            Routed::Clear(Lane::Homomorphic, _) => None,
            Routed::Clear(_, record) => Some(record),
            Routed::Sealed(_) => None,
        })
        .collect();
    let mut result = writer.clear(&clear);
    // Restricted records kept in the clear for the packer rest sealed,
    // like the other encrypted lanes.
    let restricted: Vec<Record> = batch
        .iter()
        .filter_map(|r| match r {
            Routed::Clear(Lane::Homomorphic, record) => Some(record.clone()),
            _ => None,
        })
        .collect();
    if let (Ok(()), false, Some(sealer)) = (&result, restricted.is_empty(), sealer) {
        result = seal_records(sealer, Lane::Homomorphic, Plain(restricted))
            .map_err(|e| SourceError::Io {
                path: PathBuf::from("(sealing restricted records)"),
                source: std::io::Error::other(e.to_string()),
            })
            .and_then(|b| writer.sealed(&b));
    }
    for r in batch.iter() {
        if let (Ok(()), Routed::Sealed(b)) = (&result, r) {
            result = writer.sealed(b);
        }
    }
    match tfhe {
        Ok(lists) => {
            for (line, list) in lists {
                if result.is_ok() {
                    result = writer.tfhe(line, &list);
                }
            }
        }
        Err(e) => result = result.and(Err(e)),
    }
    if result.is_err() {
        p.writer = None;
    }
    result
}

/// The plan a job over `query` runs: its input read from `config`.
pub fn job_plan(query: &Query, config: &JobConfig) -> Plan {
    Plan::for_job(query, None, input_kind(config))
}

fn input_kind(config: &JobConfig) -> InputKind {
    match (&config.programmable, is_store(&config.input)) {
        (_, false) => InputKind::File,
        (None, true) => InputKind::Store,
        (Some(_), true) => InputKind::StoreTfhe,
    }
}

/// Runs `query` over `config.input` and returns its result: the dataflow
/// of its plan ([`job_plan`], built node by node in [`crate::graph`]) on
/// `config.workers` threads, one epoch.
pub fn run_batch(query: &Query, config: &JobConfig) -> Result<JobOutput, JobError> {
    let workers = config.workers.max(1);
    let source = Arc::new(open_input(query, config, workers)?);
    // Taken by the scan that divided the file among the workers.
    let input_sha256 = match source.as_ref() {
        JobInput::Records(s) => s.sha256().map(|d| symbiont_verify::hex(&d)),
        JobInput::Store(_) | JobInput::Stream => None,
    };
    if config.commit.is_some() && matches!(source.as_ref(), JobInput::Store(_)) {
        // Its sealed records are not opened in this process: a commitment
        // to what the source read would leave them out.
        return Err(JobError::Attest(
            "attestation of a stored dataset is not built: attest the job that reads its file"
                .into(),
        ));
    }
    let (shared, forwarding) = shared_state(query, config, source)?;
    let persist = shared.persist.clone();
    let worker_shared = Arc::clone(&shared);
    timely::execute(timely::Config::process(workers), move |worker| {
        let shared = &worker_shared;
        let query = &shared.query;
        let config = &shared.config;
        // A persisted dataset keeps every field, not just those this
        // program reads; the attested fields are read too.
        let mut used = if config.persist.is_some() {
            vec![true; query.schema.fields.len()]
        } else {
            query.used_fields()
        };
        for &f in config.commit.iter().flatten() {
            used[f] = true;
        }
        let reading = Reading {
            part: worker.index(),
            parts: worker.peers(),
            schema: &query.schema,
            used: &used,
            // The programmable path reads restricted records from their
            // TFHE copy, not their sealed batches; unless a policy forbids
            // them: then their sealed batches go through the dataflow, to
            // be held there (never opened) and suspend the job like any
            // forbidden record.
            skip_restricted_batches: config.programmable.is_some()
                && !config.forbidden_lanes[Lane::Homomorphic.index()],
            progress: config.progress.as_deref(),
            quarantine: matches!(config.on_error, OnError::Quarantine(_)),
        };
        run_worker(worker, shared, |send| {
            let mut errors = Vec::new();
            let rows = feed(&shared.source, &reading, &mut errors, send);
            (rows, errors)
        });
    })
    .map_err(JobError::Dataflow)?
    .join()
    .into_iter()
    .collect::<Result<Vec<()>, String>>()
    .map_err(JobError::Dataflow)?;
    drop(forwarding);

    let mut collected =
        std::mem::take(&mut *shared.collected.lock().expect("the workers have finished"));
    // Ended at the epoch's end: before the stages answered, or by them.
    if let Some(e) = collected.ended.take() {
        return Err(e);
    }
    let persist_error = collected.persist_error.take();
    let stage_lock = collected.stage_lock.take();
    let sandboxes = std::mem::take(&mut collected.sandboxes);
    let attested = collected.attested_values.take();
    let built = std::mem::take(&mut collected.built);
    let mut output = finish(query, config, workers, collected)?;
    if let Some(e) = persist_error {
        return Err(JobError::Persist(e));
    }
    if let Some(persist) = persist {
        let (dest, seal) = finish_persist(&persist, query, config)?;
        output.persisted = Some(dest);
        output.persisted_seal = seal;
    }
    output.sandboxes = sandboxes;
    output.input_sha256 = input_sha256;
    output.attested = attested;
    output.built = built;
    if config.sealed_stage.is_some() {
        output.memory_lock = stage_lock.map(|s| match s.strip_prefix("not locked: ") {
            Some(why) => LockStatus::Unlocked(why.to_owned()),
            None if s == "mlock" => LockStatus::Locked,
            None => LockStatus::Empty,
        });
    }
    Ok(output)
}

/// What every worker of a job shares, and the homomorphic lane's
/// forwarding of its packed lists (kept until the dataflow has ended).
pub(crate) fn shared_state<'c>(
    query: &Query,
    config: &'c JobConfig,
    source: Arc<JobInput>,
) -> Result<(Arc<Shared>, Option<Forwarding<'c>>), JobError> {
    let persist = start_persist(config)?;
    let plan = job_plan(query, config);
    let runs = plan
        .nodes
        .iter()
        .map(|n| n.runs_in_job(config.commit.is_some(), config.persist.is_some()))
        .collect();
    let stages = Arc::new(EpochStages::new(query, config));
    // The homomorphic lane's packers hand each full list to the compute
    // stage of its epoch (a forbidden lane's lists are kept: never reduced
    // or decrypted).
    let forwarding = config
        .homomorphic
        .as_ref()
        .filter(|_| !config.forbidden_lanes[Lane::Homomorphic.index()])
        .map(|h| Forwarding::start(h, &stages));
    let shared = Arc::new(Shared {
        query: query.clone(),
        config: config.clone(),
        plan: plan.nodes,
        runs,
        source,
        collected: Mutex::default(),
        stages,
        persist,
        // Public records cross into a sandboxed aggregation sealed, like
        // the others.
        seal_public: config
            .sealed_stage
            .as_ref()
            .is_some_and(|s| s.tier(Lane::Plaintext) > 0),
    });
    Ok((shared, forwarding))
}

/// The end of an epoch, once everything before `merge` has passed it (the
/// workers have read their parts): what ends the job first
/// ([`before_stages`], a value the commitment cannot hold), then the
/// epoch's stages' answers, as updates for `merge`.
pub(crate) fn close_epoch(
    shared: &Shared,
    epoch: u64,
) -> Result<Vec<PartialUpdate<u64>>, JobError> {
    let config = &shared.config;
    let lock = || {
        shared
            .collected
            .lock()
            .expect("no worker panicked holding the lock")
    };
    let parts = {
        let mut c = lock();
        before_stages(config, &mut c)?;
        std::mem::take(&mut c.attested)
    };
    // A value that cannot be committed ends the job before any stage is
    // asked for its answer and before anything is persisted.
    if let Some(fields) = &config.commit {
        let values = merge_attested(parts, fields, &shared.query, &config.input)
            .map_err(JobError::Attest)?;
        lock().attested_values = Some(values);
    }
    let (sealed, lists) = shared.stages.take(epoch);
    let mut answers = Answers::default();
    lane_stages(
        config,
        sealed.as_deref(),
        lists.as_deref(),
        &shared.source,
        &mut answers,
    )?;
    let mut c = lock();
    c.errors.append(&mut answers.errors);
    c.stage_lock = answers.memory_lock;
    c.sandboxes.append(&mut answers.sandboxes);
    Ok(answers
        .partials
        .into_iter()
        .map(|(key, partial)| (key, epoch, partial))
        .collect())
}

/// What ends a job once its dataflow has run, before the stages are asked
/// for their answers and before the key holder decrypts anything: an input
/// that could not be read, a record of a forbidden lane (on the
/// programmable path too, whose forbidden restricted records are then
/// read from their sealed batches and held like any other), restricted
/// records with no TFHE copy.
fn before_stages(config: &JobConfig, collected: &mut Collected) -> Result<(), JobError> {
    // An input that could not be read fails the job as it is.
    if let Some(e) = collected.source_error.take() {
        return Err(e.into());
    }
    // Suspension comes before anything of a forbidden class is opened or
    // decrypted: its records were held at route (the sandboxed stage has
    // opened only the allowed classes' batches, and is now abandoned), and
    // the key holder is asked for no total.
    if let Some(suspended) = suspension(config, collected) {
        return Err(suspended);
    }
    if config.programmable.is_some() && collected.sealed_lanes[Lane::Homomorphic.index()] > 0 {
        // This program's classifier made restricted records of some the
        // store keeps public: they have no TFHE copy.
        return Err(JobError::Unsupported(
            "this program classifies as restricted records the stored dataset keeps public; they have no TFHE copy: read the dataset with --input NAME=DIR instead of tfhe:DIR".into(),
        ));
    }
    Ok(())
}

/// What an epoch's stages answered.
#[derive(Default)]
struct Answers {
    partials: Vec<(AggKey, Partial)>,
    errors: Vec<RowError>,
    memory_lock: Option<String>,
    pub sandboxes: Vec<serde_json::Value>,
}

/// An epoch's stages, once the dataflow has handed them everything: the
/// sandboxed stage opens and aggregates the sealed batches, the
/// homomorphic lane's compute stage and key holder its ciphertexts.
fn lane_stages(
    config: &JobConfig,
    sealed: Option<&dyn SealedFeed>,
    lists: Option<&SentFeed>,
    source: &JobInput,
    answers: &mut Answers,
) -> Result<(), JobError> {
    if let Some(feed) = sealed {
        let out = feed.finish().map_err(JobError::Stage)?;
        if let Some(row) = out.failures.into_iter().min() {
            return Err(JobError::Integrity {
                path: config.input.clone(),
                row,
            });
        }
        answers.partials.extend(out.partials);
        answers.errors.extend(out.errors);
        answers.memory_lock = out.memory_lock;
        answers.sandboxes = out.sandboxes;
    }
    if let (Some(h), Some(feed)) = (&config.homomorphic, lists) {
        answers
            .sandboxes
            .extend(homomorphic_partials(h, feed, &mut answers.partials)?);
    }
    if let Some(p) = &config.programmable {
        answers
            .sandboxes
            .extend(programmable_partials(p, source, &mut answers.partials)?);
    }
    Ok(())
}

/// A full batch for the dataflow: typed records (to classify), or a stored
/// dataset's routed items (already classified).
pub(crate) enum Batch<'a> {
    Records(&'a mut Vec<Record>),
    Stored(&'a mut Vec<Routed>),
}

/// What one worker reads of the input.
struct Reading<'a> {
    part: usize,
    parts: usize,
    schema: &'a Schema,
    used: &'a [bool],
    skip_restricted_batches: bool,
    progress: Option<&'a AtomicU64>,
    quarantine: bool,
}

/// Reads the worker's part of `source`, handing each full batch to `send`
/// (which gives it to the dataflow and steps the worker) and the last,
/// partial one too; bad rows go to `errors`. Returns the rows read.
fn feed(
    source: &JobInput,
    reading: &Reading<'_>,
    errors: &mut Vec<RowError>,
    send: &mut dyn FnMut(Batch<'_>),
) -> Result<u64, SourceError> {
    let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
    let result = match source {
        // A stream's worker sends its records itself.
        JobInput::Stream => Ok(0),
        JobInput::Store(store) => {
            // Sealed batches keep their lanes and skip classification
            // (they are not opened before aggregation); public records go
            // through the classify stage, which may only raise them (this
            // program's classifier, a policy's encryption requirement).
            let mut items: Vec<Routed> = Vec::with_capacity(BATCH);
            let result = store.read(reading.part, reading.parts, |item| match item {
                Routed::Clear(_, record) => {
                    batch.push(record);
                    if batch.len() == BATCH {
                        send(Batch::Records(&mut batch));
                        batch.clear();
                    }
                }
                // The programmable path reads these from tfhe.bin.
                Routed::Sealed(b)
                    if reading.skip_restricted_batches && b.lane == Lane::Homomorphic => {}
                sealed => {
                    items.push(sealed);
                    if items.len() == BATCH {
                        send(Batch::Stored(&mut items));
                        items.clear();
                    }
                }
            });
            if !items.is_empty() {
                send(Batch::Stored(&mut items));
            }
            result
        }
        JobInput::Records(source) => source
            .read(
                reading.part,
                reading.schema,
                reading.used,
                |record| {
                    batch.push(record);
                    if batch.len() == BATCH {
                        if let Some(p) = reading.progress {
                            p.fetch_add(BATCH as u64, Ordering::Relaxed);
                        }
                        send(Batch::Records(&mut batch));
                        batch.clear();
                        batch.reserve(BATCH);
                    }
                },
                |error| {
                    errors.push(error);
                    if reading.quarantine {
                        AfterError::Continue
                    } else {
                        AfterError::Stop
                    }
                },
            )
            .map(|stats| stats.rows),
    };
    if !batch.is_empty() {
        send(Batch::Records(&mut batch));
    }
    result
}

/// While this lives, the homomorphic lane's packers hand each full list to
/// the compute stage of its epoch.
pub(crate) struct Forwarding<'a>(&'a PackSink);

impl<'a> Forwarding<'a> {
    fn start(h: &'a HomomorphicLane, stages: &Arc<EpochStages>) -> Forwarding<'a> {
        let stages = Arc::clone(stages);
        h.sink.forward(Some(Arc::new(move |epoch, lists| {
            if let Some(feed) = stages.list_feed(epoch) {
                feed.send(lists);
            }
        })));
        Forwarding(&h.sink)
    }
}

impl Drop for Forwarding<'_> {
    /// The sink keeps lists again, and lets go of the stages.
    fn drop(&mut self) {
        self.0.forward(None);
    }
}

/// The homomorphic lane's additive path once the dataflow has run: its
/// compute stage, fed the lists while the dataflow ran, reduces them (no
/// key), then the key holder decrypts only the reduced columns. Their
/// partials go to `partials`; the stage's sandbox report is returned.
fn homomorphic_partials(
    h: &HomomorphicLane,
    feed: &SentFeed,
    partials: &mut Vec<(AggKey, Partial)>,
) -> Result<Option<serde_json::Value>, JobError> {
    let ((reduced, report), sent) = feed.finish().map_err(JobError::Homomorphic)?;
    if reduced.is_empty() && sent.is_empty() {
        return Ok(report);
    }
    let totals = h
        .key_holder
        .decrypt(&reduced, &sent)
        .map_err(JobError::Homomorphic)?;
    let decrypted =
        decrypted_partials(&totals).map_err(|e| JobError::Homomorphic(e.to_string()))?;
    for ((agg, group), p) in decrypted {
        partials.push(((agg, Lane::Homomorphic, group), p));
    }
    Ok(report)
}

/// The programmable path over a stored dataset's TFHE copy: its compute
/// stage evaluates the spec with the server key only, then the key holder
/// decrypts only the aggregates.
fn programmable_partials(
    p: &ProgrammableLane,
    source: &JobInput,
    partials: &mut Vec<(AggKey, Partial)>,
) -> Result<Option<serde_json::Value>, JobError> {
    let JobInput::Store(store) = source else {
        return Err(JobError::Homomorphic(
            "the programmable path reads a stored dataset".into(),
        ));
    };
    let records: Vec<Vec<u8>> = store
        .tfhe_records()?
        .into_iter()
        .map(|(_, list)| list)
        .collect();
    let n = records.len() as i64;
    let mut report = None;
    if n > 0 {
        let reserved = p
            .key_holder
            .reserve_programmable(&p.compiled.spec, n as u64)
            .map_err(JobError::Homomorphic)?;
        let (encrypted, r) = p
            .stage
            .evaluate(&p.compiled.spec, records)
            .map_err(JobError::Homomorphic)?;
        let decrypted = p
            .key_holder
            .decrypt_programmable(&encrypted, &p.compiled.spec, n as u64, &reserved)
            .map_err(JobError::Homomorphic)?;
        for (agg, partial) in p
            .compiled
            .partials(&decrypted)
            .map_err(JobError::Homomorphic)?
        {
            partials.push(((agg, Lane::Homomorphic, Value::Null), partial));
        }
        report = r;
    }
    partials.push((
        (LANE_COUNT, Lane::Homomorphic, Value::Null),
        Partial {
            count: n,
            ..Partial::default()
        },
    ));
    Ok(report)
}

/// Finishes the persisted dataset (manifest, then the directory renamed
/// into place); its destination and its seal.
fn finish_persist(
    persist: &Mutex<Persist>,
    query: &Query,
    config: &JobConfig,
) -> Result<(PathBuf, Option<String>), JobError> {
    let mut p = persist.lock().expect("the workers have finished");
    let writer = p.writer.take().expect("no error, so the writer is there");
    let sealer = config.keys.sealer.as_ref().expect("checked before the job");
    let carried: Vec<(&str, &[u8])> = config
        .carried
        .iter()
        .map(|(name, file)| (*name, file.bytes.as_slice()))
        .collect();
    let (_, manifest) = writer
        .finish(
            sealer.context().dataset(),
            &query.schema,
            &symbiont_operators::encrypted_fields(&query.schema)
                .into_iter()
                .map(|i| query.schema.fields[i].0.clone())
                .collect::<Vec<_>>(),
            &carried,
            sealer,
        )
        .map_err(JobError::Persist)?;
    std::fs::rename(&p.partial, &p.dest).map_err(|source| {
        JobError::Persist(SourceError::Io {
            path: p.dest.clone(),
            source,
        })
    })?;
    Ok((p.dest.clone(), manifest.seal))
}

/// The digests of the files a dataset carries, by name.
pub(crate) fn carried_digests(
    carried: &[(&'static str, crate::Carried)],
) -> std::collections::BTreeMap<String, String> {
    carried
        .iter()
        .map(|(name, file)| ((*name).to_owned(), file.sha256.clone()))
        .collect()
}

/// The suspension of a job in which a record of a forbidden lane was seen:
/// at the first such record.
fn suspension(config: &JobConfig, collected: &Collected) -> Option<JobError> {
    let (lane, line) = Lane::ALL
        .iter()
        .filter_map(|l| collected.forbidden_seen[l.index()].map(|line| (*l, line)))
        .min_by_key(|(_, line)| *line)?;
    Some(JobError::Suspended {
        path: config.input.clone(),
        line,
        lane,
        class: lane.class(),
    })
}

/// The line of a routed record, or of a sealed batch's first record (read
/// from its header, not opened).
pub(crate) fn first_line(r: &Routed) -> u64 {
    match r {
        Routed::Clear(_, record) => record.line,
        Routed::Sealed(b) => symbiont_crypto::read_header(&b.bytes)
            .ok()
            .and_then(|(h, _, _)| h.ids.first().copied())
            .unwrap_or(0),
    }
}

/// Records are handed to the dataflow in batches of this many.
pub(crate) const BATCH: usize = 1024;

fn finish(
    query: &Query,
    config: &JobConfig,
    workers: usize,
    collected: Collected,
) -> Result<JobOutput, JobError> {
    integrity(config)?;
    let quarantined = bad_rows(config, collected.errors, false)?;
    let mut totals = Totals::default();
    totals.add(collected.partials);
    let value = totals.value(query)?;
    Ok(JobOutput {
        value,
        lanes: totals.lanes,
        rows: collected.rows,
        quarantined,
        workers,
        memory_lock: config.keys.opener.as_ref().and_then(|o| o.lock_status()),
        persisted: None,
        persisted_seal: None,
        min_lane: query.min_lane,
        sandboxes: Vec::new(),
        input: input_kind(config),
        input_sha256: None,
        attested: None,
        built: Vec::new(),
    })
}

/// A sealed batch the opener refused fails the job, naming its row.
pub(crate) fn integrity(config: &JobConfig) -> Result<(), JobError> {
    if let Some(opener) = &config.keys.opener {
        let mut failures = opener.failures();
        failures.sort();
        if let Some(row) = failures.into_iter().next() {
            return Err(JobError::Integrity {
                path: config.input.clone(),
                row,
            });
        }
    }
    Ok(())
}

/// The bad rows as `--on-error` says: the first fails the job, or all go
/// to the quarantine file (`append`ed to, for a stream's later epochs).
/// Returns how many were quarantined.
pub(crate) fn bad_rows(
    config: &JobConfig,
    mut errors: Vec<RowError>,
    append: bool,
) -> Result<u64, JobError> {
    errors.sort();
    errors.dedup_by_key(|e| e.line);
    match &config.on_error {
        OnError::Fail => match errors.into_iter().next() {
            Some(row) => Err(JobError::Row {
                path: config.input.clone(),
                row,
            }),
            None => Ok(0),
        },
        OnError::Quarantine(path) => {
            write_quarantine(path, &config.input, &errors, append)?;
            Ok(errors.len() as u64)
        }
    }
}

/// A job's result as its partials come in: records per lane, the merged
/// partials of each aggregate and key, the group keys.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Totals {
    pub lanes: [u64; 3],
    #[serde(with = "merged_entries")]
    merged: Merged,
    groups: BTreeSet<Value>,
}

/// [`Merged`] as a list of entries (JSON has only string keys).
mod merged_entries {
    use symbiont_operators::{Merged, Partial, Value};

    type Entries = Vec<((usize, Value), Partial)>;

    pub(super) fn serialize<S: serde::Serializer>(m: &Merged, s: S) -> Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&m.iter().collect::<Vec<_>>(), s)
    }

    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Merged, D::Error> {
        let entries: Entries = serde::Deserialize::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}

impl Totals {
    /// Adds merged partials (of any epochs) to the totals.
    pub(crate) fn add(&mut self, partials: Vec<(AggKey, Partial)>) {
        use differential_dataflow::difference::Semigroup;
        for ((agg, lane, key), partial) in partials {
            match agg {
                LANE_COUNT => self.lanes[lane.index()] += partial.count as u64,
                GROUP_KEYS => {
                    self.groups.insert(key);
                }
                i => {
                    self.merged
                        .entry((i as usize, key))
                        .and_modify(|p| p.plus_equals(&partial))
                        .or_insert(partial);
                }
            }
        }
    }

    /// The entry agent's value over everything added.
    pub(crate) fn value(&self, query: &Query) -> Result<serde_json::Value, JobError> {
        let groups: Vec<Value> = self.groups.iter().cloned().collect();
        Ok(assemble(query, &self.merged, &groups)?)
    }
}

/// Writes one JSON object per bad row: its line, field and reason (never
/// its values).
fn write_quarantine(
    path: &Path,
    input: &Path,
    errors: &[RowError],
    append: bool,
) -> Result<(), JobError> {
    use std::io::Write;
    let io = |source| JobError::Quarantine {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .open(path)
        .map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    for e in errors {
        let line = serde_json::json!({
            "file": input.display().to_string(),
            "line": e.line,
            "field": e.field,
            "reason": e.reason,
        });
        writeln!(out, "{line}").map_err(io)?;
    }
    out.flush().map_err(io)
}
