//! Batch jobs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Concat, Input, Inspect, OkErr, Probe};
use timely::dataflow::{InputHandle, ProbeHandle, StreamVec};

use symbiont_operators::{
    AfterError, AggKey, AggregateError, AggregatePartials, Classify, Format, GROUP_KEYS,
    LANE_COUNT, Lane, LaneImpl, Merged, Partial, PartialUpdate, Query, Record, Routed, RowError,
    Source, SourceError, Value, assemble,
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
            .map(|l| (l.name().to_owned(), LaneImpl::of(*l).name().into()))
            .collect();
        serde_json::json!({
            "lanes": lanes,
            "lane_impl": lane_impl,
            "rows": self.rows,
            "quarantined": self.quarantined,
            "workers": self.workers,
        })
    }
}

/// What the workers hand back.
#[derive(Default)]
struct Collected {
    partials: Vec<(AggKey, Partial)>,
    errors: Vec<RowError>,
    rows: u64,
    source_error: Option<SourceError>,
}

/// Runs `query` over `config.input` and returns its result.
pub fn run_batch(query: &Query, config: &JobConfig) -> Result<JobOutput, JobError> {
    let workers = config.workers.max(1);
    let format = Format::of_path(&config.input)
        .ok_or_else(|| JobError::UnknownFormat(config.input.clone()))?;
    let source = Arc::new(Source::open(&config.input, format, &query.schema, workers)?);
    let collected = Arc::new(Mutex::new(Collected::default()));
    let quarantine = matches!(config.on_error, OnError::Quarantine(_));
    let shared_query = Arc::new(query.clone());
    let sink = Arc::clone(&collected);
    let progress = config.progress.clone();

    timely::execute(timely::Config::process(workers), move |worker| {
        let index = worker.index();
        let query = Rc::new((*shared_query).clone());
        let used = query.used_fields();
        let sink_partials = Arc::clone(&sink);
        let sink_errors = Arc::clone(&sink);

        let mut input: InputHandle<u64, _> = InputHandle::new();
        let probe = ProbeHandle::new();
        worker.dataflow::<u64, _, _>(|scope| {
            let records = scope.input_from(&mut input);
            let (routed, classify_errors): (
                StreamVec<'_, u64, Routed>,
                StreamVec<'_, u64, RowError>,
            ) = records
                .classify(query.classifier.clone(), Pipeline)
                .ok_err(|r| r);
            let (updates, aggregate_errors): (
                StreamVec<'_, u64, PartialUpdate<u64>>,
                StreamVec<'_, u64, RowError>,
            ) = routed
                .aggregate_partials(Rc::clone(&query), Pipeline)
                .ok_err(|r| r);
            updates
                .as_collection()
                .consolidate()
                .inner
                .inspect(move |(key, _time, partial): &(AggKey, u64, Partial)| {
                    sink_partials
                        .lock()
                        .expect("no worker panicked holding the lock")
                        .partials
                        .push((key.clone(), partial.clone()));
                })
                .probe_with(&probe);
            classify_errors
                .concat(aggregate_errors)
                .inspect(move |e: &RowError| {
                    sink_errors
                        .lock()
                        .expect("no worker panicked holding the lock")
                        .errors
                        .push(e.clone());
                })
                .probe_with(&probe);
        });

        let mut batch: Vec<Record> = Vec::with_capacity(BATCH);
        let mut source_errors: Vec<RowError> = Vec::new();
        let result = source.read(
            index,
            &shared_query.schema,
            &used,
            |record| {
                batch.push(record);
                if batch.len() == BATCH {
                    if let Some(p) = &progress {
                        p.fetch_add(BATCH as u64, Ordering::Relaxed);
                    }
                    input.send_batch(&mut batch);
                    batch.clear();
                    batch.reserve(BATCH);
                    worker.step();
                }
            },
            |error| {
                source_errors.push(error);
                if quarantine {
                    AfterError::Continue
                } else {
                    AfterError::Stop
                }
            },
        );
        if !batch.is_empty() {
            input.send_batch(&mut batch);
        }
        input.close();
        while !probe.done() {
            worker.step();
        }
        let mut c = sink.lock().expect("no worker panicked holding the lock");
        c.errors.extend(source_errors);
        match result {
            Ok(stats) => c.rows += stats.rows,
            Err(e) => {
                c.source_error.get_or_insert(e);
            }
        }
    })
    .map_err(JobError::Dataflow)?
    .join()
    .into_iter()
    .collect::<Result<Vec<()>, String>>()
    .map_err(JobError::Dataflow)?;

    let collected = std::mem::take(&mut *collected.lock().expect("the workers have finished"));
    finish(query, config, workers, collected)
}

/// Records are handed to the dataflow in batches of this many.
const BATCH: usize = 1024;

fn finish(
    query: &Query,
    config: &JobConfig,
    workers: usize,
    collected: Collected,
) -> Result<JobOutput, JobError> {
    if let Some(e) = collected.source_error {
        return Err(e.into());
    }
    let mut errors = collected.errors;
    errors.sort();
    errors.dedup_by_key(|e| e.line);
    let mut quarantined = 0;
    match &config.on_error {
        OnError::Fail => {
            if let Some(row) = errors.into_iter().next() {
                return Err(JobError::Row {
                    path: config.input.clone(),
                    row,
                });
            }
        }
        OnError::Quarantine(path) => {
            write_quarantine(path, &config.input, &errors)?;
            quarantined = errors.len() as u64;
        }
    }
    let mut lanes = [0u64; 3];
    let mut merged: Merged = BTreeMap::new();
    let mut groups: BTreeSet<Value> = BTreeSet::new();
    for ((agg, lane, key), partial) in collected.partials {
        match agg {
            LANE_COUNT => lanes[lane.index()] += partial.count as u64,
            GROUP_KEYS => {
                groups.insert(key);
            }
            i => {
                use differential_dataflow::difference::Semigroup;
                merged
                    .entry((i as usize, key))
                    .and_modify(|p| p.plus_equals(&partial))
                    .or_insert(partial);
            }
        }
    }
    let groups: Vec<Value> = groups.into_iter().collect();
    let value = assemble(query, &merged, &groups)?;
    Ok(JobOutput {
        value,
        lanes,
        rows: collected.rows,
        quarantined,
        workers,
    })
}

/// Writes one JSON object per bad row: its line, field and reason (never
/// its values).
fn write_quarantine(path: &Path, input: &Path, errors: &[RowError]) -> Result<(), JobError> {
    use std::io::Write;
    let io = |source| JobError::Quarantine {
        path: path.to_owned(),
        source,
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).map_err(io)?);
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
