//! Streaming ingestion (`symbi stream`): the job's dataflow kept running
//! over records that arrive, one timely epoch per `--epoch`, and the entry
//! agent's value over every record so far written at each epoch's end.
//!
//! A reader thread reads lines from the source (standard input, a file
//! that grows, as `tail -F` reads it, or the files renamed into a
//! directory), types them as the file readers do
//! ([`LineTyper`]) and hands them over a bounded channel: a producer faster
//! than the dataflow waits, so memory stays bounded. One timely worker
//! sends each epoch's records at that epoch, advances its inputs, and once
//! everything before `merge` has passed the epoch, finishes the epoch's
//! stages as a batch job finishes its one epoch ([`close_epoch`]): the
//! policies' suspension check, the sandboxed stage's answer for the sealed
//! lanes, the homomorphic lane's reduction and decryption. The epoch's
//! merged partials (differential's consolidation per key and epoch) are
//! then added to the running totals, a `Semigroup` sum, and the value
//! assembled from them.
//!
//! The sandboxed stages serve every epoch from one sandbox each (a stream's
//! [`crate::stage::LiveStage`]). With `--state`, each epoch's end leaves a
//! checkpoint ([`crate::checkpoint`]) a restarted stream goes on from.
//!
//! Not built yet (docs/STREAMING.md): the NATS JetStream source,
//! per-epoch attestation, resuming a suspended stream.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use symbiont_operators::{Format, Lane, LineTyper, Query, Record, RowError, SourceError};

use crate::checkpoint::{Checkpoint, Position, StateDir};
use crate::graph::{Dataflow, PARK, Shared};
use crate::job::{BATCH, JobConfig, JobError, JobInput, Totals, bad_rows, close_epoch, integrity};

/// Where a stream's records come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamSource {
    /// Standard input, until it ends.
    Stdin,
    /// A file that grows: read from its start, then as lines are appended
    /// (`tail -F`); a truncated file ends the stream, a rotated one (a new
    /// file at the path) is read from its start once the old one is read.
    Follow(PathBuf),
    /// A directory into which files are renamed: each file read once,
    /// whole, in name order, then the directory watched for the next.
    Dir(PathBuf),
}

impl StreamSource {
    /// `-`, `follow:PATH` or `dir:PATH`.
    pub fn parse(text: &str) -> Result<StreamSource, String> {
        let path = |prefix: &str| {
            text.strip_prefix(prefix)
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        };
        if text == "-" {
            Ok(StreamSource::Stdin)
        } else if let Some(p) = path("follow:") {
            Ok(StreamSource::Follow(p))
        } else if let Some(p) = path("dir:") {
            Ok(StreamSource::Dir(p))
        } else {
            Err(format!(
                "a stream's source is `-` (standard input), `follow:PATH` or `dir:PATH`, not `{text}`"
            ))
        }
    }

    /// The path the job names its input by (the dataset's files beside it,
    /// its default id): `-` for standard input.
    pub fn path(&self) -> PathBuf {
        match self {
            StreamSource::Stdin => PathBuf::from("-"),
            StreamSource::Follow(path) | StreamSource::Dir(path) => path.clone(),
        }
    }
}

/// When an epoch ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochRule {
    /// After this many lines (records and bad rows).
    Lines(u64),
    /// After this long, records or not.
    Every(Duration),
}

impl std::str::FromStr for EpochRule {
    type Err = String;

    fn from_str(text: &str) -> Result<EpochRule, String> {
        let wrong = || {
            format!(
                "--epoch takes a count of records (10000) or a duration (1s, 500ms), not `{text}`"
            )
        };
        if let Ok(n) = text.parse::<u64>() {
            return if n > 0 {
                Ok(EpochRule::Lines(n))
            } else {
                Err(wrong())
            };
        }
        match humantime::parse_duration(text) {
            Ok(d) if !d.is_zero() => Ok(EpochRule::Every(d)),
            _ => Err(wrong()),
        }
    }
}

/// A stream: its source, its epochs, its lines' format.
#[derive(Clone, Debug)]
pub struct StreamSpec {
    pub source: StreamSource,
    pub epoch: EpochRule,
    /// CSV (the first line is the header) or NDJSON.
    pub format: Format,
    /// `--state DIR`: checkpoints, and where a restarted stream goes on
    /// from (a followed file or a directory).
    pub state: Option<PathBuf>,
    /// What each epoch writes.
    pub emit: Emit,
}

/// What each epoch writes (`--emit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Emit {
    /// One line: the value over every record so far.
    #[default]
    Cumulative,
    /// The value's rows that changed, as differential updates: a line
    /// `{"epoch", "diff": -1, "row"}` per row gone and `+1` per row come.
    Changes,
}

impl std::str::FromStr for Emit {
    type Err = String;

    fn from_str(text: &str) -> Result<Emit, String> {
        match text {
            "cumulative" => Ok(Emit::Cumulative),
            "changes" => Ok(Emit::Changes),
            _ => Err(format!(
                "--emit takes `cumulative` or `changes`, not `{text}`"
            )),
        }
    }
}

/// The lines `--emit changes` writes for `epoch`, whose value went from
/// `before` (`None`: nothing yet) to `after`: a row that left, `-1`; a row
/// that came, `+1` (a changed row is both). A value that is a list (a
/// `group_by`'s rows) is compared row by row, as a multiset; any other
/// value is one row. Retractions come first, then additions, each in the
/// value's order. No change, no line.
pub(crate) fn changes(epoch: u64, before: Option<&Value>, after: &Value) -> Vec<Value> {
    let rows = |v: Option<&Value>| -> Vec<Value> {
        match v {
            None => Vec::new(),
            Some(Value::Array(rows)) => rows.clone(),
            Some(v) => vec![v.clone()],
        }
    };
    let (mut old, new) = (rows(before), rows(Some(after)));
    let mut added = Vec::new();
    for row in new {
        match old.iter().position(|o| *o == row) {
            Some(at) => {
                old.remove(at);
            }
            None => added.push(row),
        }
    }
    let line = |diff: i64, row: Value| json!({"epoch": epoch, "diff": diff, "row": row});
    old.into_iter()
        .map(|row| line(-1, row))
        .chain(added.into_iter().map(|row| line(1, row)))
        .collect()
}

/// What the reader thread hands the dataflow: each record and bad row
/// with the byte offset just past its line (in the file being read).
enum Item {
    Record(Record, u64),
    Bad(RowError, u64, u64),
    /// A file was opened: its identity, its name in a directory source,
    /// and a notice if it replaced another (rotation).
    File(Opened),
    Failed(SourceError),
}

/// What the stream tells its caller.
pub(crate) enum StreamEvent {
    /// An epoch ended: its line, and its checkpoint with `--state`.
    Epoch(EpochLine, Option<Box<Checkpoint>>),
    /// The stream went on from a checkpoint whose value was this: the
    /// value, and what the audit log records of the checkpoint.
    Resumed(Value, Value),
    /// Something to tell the user (a rotated file).
    Notice(String),
}

/// One epoch's output.
pub(crate) struct EpochLine {
    pub epoch: u64,
    /// Records read so far.
    pub records: u64,
    /// The entry agent's value over them.
    pub value: Value,
    /// Records per lane so far.
    pub lanes: [u64; 3],
    /// Bad rows quarantined so far.
    pub quarantined: u64,
    /// This epoch's records and how long it took, from its first wait for
    /// a record to its line.
    pub epoch_records: u64,
    pub epoch_ms: u64,
}

impl EpochLine {
    /// The NDJSON line: `{"epoch", "records", "value", "_meta"}`.
    pub(crate) fn to_json(&self) -> Value {
        let lanes: serde_json::Map<String, Value> = Lane::ALL
            .iter()
            .map(|l| (l.name().to_owned(), self.lanes[l.index()].into()))
            .collect();
        json!({
            "epoch": self.epoch,
            "records": self.records,
            "value": self.value,
            "_meta": {
                "lanes": lanes,
                "quarantined": self.quarantined,
                "epoch_records": self.epoch_records,
                "epoch_ms": self.epoch_ms,
            },
        })
    }
}

/// How a stream ended, when it did not fail: its source ended (or its
/// caller stopped it) after `epochs` epochs.
pub(crate) struct StreamEnd {
    pub epochs: u64,
    pub records: u64,
    pub quarantined: u64,
    pub lanes: [u64; 3],
    /// The SHA-256 of every byte read (hex).
    pub read_sha256: String,
    /// The reports of the sandboxes that served every epoch.
    pub sandboxes: Vec<serde_json::Value>,
}

/// Runs `query` over `stream` with `config` (one worker), calling `on` at
/// every epoch's end; an error from `on` stops the stream after that epoch.
pub(crate) fn run_stream(
    query: &Query,
    config: &JobConfig,
    stream: &StreamSpec,
    cancel: Option<Arc<AtomicBool>>,
    on: &mut dyn FnMut(StreamEvent) -> anyhow::Result<()>,
) -> Result<StreamEnd, JobError> {
    let state_error = |why: String| {
        JobError::Source(SourceError::Malformed {
            path: stream.source.path(),
            reason: why,
        })
    };
    let state = match &stream.state {
        Some(dir) => Some(StateDir::open(dir).map_err(state_error)?),
        None => None,
    };
    let fingerprint = fingerprint(query, stream);
    let resumed = match &state {
        Some(dir) => dir.load(&fingerprint).map_err(state_error)?,
        None => None,
    };
    let (shared, forwarding) = crate::job::shared_state(query, config, Arc::new(JobInput::Stream))?;
    let used = query.used_fields();
    let from = resumed.as_ref().map(|c| c.position.clone());
    let (items, from_reader) = mpsc::sync_channel(CHUNKS);
    let read = Arc::new(Mutex::new(Sha256::new()));
    let stop = cancel.unwrap_or_default();
    {
        let (stream, schema, read) = (stream.clone(), query.schema.clone(), Arc::clone(&read));
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            read_source(&stream, from, &schema, &used, &items, &read, &stop);
        });
    }
    // Bounded: a caller slow to write the lines slows the stream.
    let (events, to_caller) = mpsc::sync_channel(16);
    let rule = stream.epoch;
    let worker_shared = Arc::clone(&shared);
    let from_reader = Mutex::new(Some(from_reader));
    let worker_stop = Arc::clone(&stop);
    let resume = Resume {
        from: resumed,
        checkpoints: state.is_some().then_some(fingerprint),
    };
    let resume = Mutex::new(Some(resume));
    let guards = timely::execute(timely::Config::process(1), move |worker| {
        let items = from_reader
            .lock()
            .expect("one worker")
            .take()
            .expect("one worker");
        let resume = resume
            .lock()
            .expect("one worker")
            .take()
            .expect("one worker");
        stream_worker(
            worker,
            &worker_shared,
            &items,
            rule,
            resume,
            &events,
            &worker_stop,
        )
    })
    .map_err(JobError::Dataflow)?;
    let mut caller_error = None;
    for event in to_caller {
        match event {
            Ok(event) => {
                if caller_error.is_some() {
                    continue;
                }
                // An epoch's checkpoint is saved once its line is written:
                // a stream killed in between writes that line again.
                let (event, checkpoint) = match event {
                    StreamEvent::Epoch(line, c) => (StreamEvent::Epoch(line, None), c),
                    other => (other, None),
                };
                let written = on(event).and_then(|()| match (&state, checkpoint) {
                    (Some(dir), Some(mut c)) => {
                        c.position.tail = tail_of(&stream.source, &c.position);
                        dir.save(&c).map_err(anyhow::Error::msg)
                    }
                    _ => Ok(()),
                });
                if let Err(e) = written {
                    stop.store(true, Ordering::Relaxed);
                    caller_error = Some(e);
                }
            }
            Err(e) => {
                // The reader of a followed file stops waiting too.
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    let ended = guards
        .join()
        .into_iter()
        .next()
        .ok_or_else(|| JobError::Dataflow("no worker".into()))?
        .map_err(JobError::Dataflow)?;
    drop(forwarding);
    drop(shared);
    if let Some(e) = caller_error {
        return Err(JobError::Dataflow(format!("{e:#}")));
    }
    let read_sha256 =
        symbiont_verify::hex(&read.lock().expect("the reader is done").clone().finalize());
    Ok(StreamEnd {
        read_sha256,
        ..ended
    })
}

/// Where a stream starts: from its last checkpoint, if it has one; and
/// whether it makes checkpoints (with the stream's fingerprint).
struct Resume {
    from: Option<Checkpoint>,
    checkpoints: Option<String>,
}

/// What a checkpoint must belong to: the program's query, the source and
/// its format (SHA-256, hex).
fn fingerprint(query: &Query, stream: &StreamSpec) -> String {
    let mut h = Sha256::new();
    h.update(serde_json::to_vec(query).unwrap_or_default());
    h.update(format!("\0{:?}\0{:?}", stream.source, stream.format).as_bytes());
    symbiont_verify::hex(&h.finalize())
}

/// How often a worker waiting for records checks whether it was stopped.
const STOP_POLL: Duration = Duration::from_millis(100);

/// The stream's one timely worker: an epoch at a time, until the source
/// ends, a job error (sent as `Err` to the caller), or `stop`.
fn stream_worker(
    worker: &mut timely::worker::Worker,
    shared: &Arc<Shared>,
    items: &Receiver<Vec<Item>>,
    rule: EpochRule,
    resume: Resume,
    events: &SyncSender<Result<StreamEvent, JobError>>,
    stop: &AtomicBool,
) -> StreamEnd {
    let mut df = Dataflow::build(worker, shared);
    let mut end = StreamEnd {
        epochs: 0,
        records: 0,
        quarantined: 0,
        lanes: [0; 3],
        read_sha256: String::new(),
        sandboxes: Vec::new(),
    };
    // The dataflow's epochs start at 0; the lines' go on from the
    // checkpoint's.
    let (mut totals, first, mut position) = match resume.from {
        Some(c) => {
            end.records = c.records;
            end.quarantined = c.quarantined;
            end.lanes = c.totals.lanes;
            if let Ok(value) = c.totals.value(&shared.query) {
                let _ = events.send(Ok(StreamEvent::Resumed(value, c.resumed())));
            }
            (c.totals, c.epoch, c.position)
        }
        None => (Totals::default(), 0, Position::default()),
    };
    let lock = || {
        shared
            .collected
            .lock()
            .expect("no worker panicked holding the lock")
    };
    let mut open = true;
    let mut epoch = 0u64;
    // A chunk's items not taken yet: they belong to the next epoch.
    let mut leftover = Vec::new().into_iter();
    while open && !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let deadline = match rule {
            EpochRule::Every(d) => Some(started + d),
            EpochRule::Lines(_) => None,
        };
        let (mut batch, mut errors) = (Vec::with_capacity(BATCH), Vec::new());
        let (mut lines, mut records) = (0u64, 0u64);
        loop {
            if matches!(rule, EpochRule::Lines(n) if lines >= n) {
                break;
            }
            let Some(item) = leftover.next() else {
                let wait = deadline.map_or(STOP_POLL, |d| {
                    d.saturating_duration_since(Instant::now()).min(STOP_POLL)
                });
                match items.recv_timeout(wait) {
                    Ok(chunk) => leftover = chunk.into_iter(),
                    Err(RecvTimeoutError::Timeout) => {
                        if stop.load(Ordering::Relaxed) {
                            open = false;
                            break;
                        }
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            break;
                        }
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        open = false;
                        break;
                    }
                }
                continue;
            };
            match item {
                Item::Record(record, offset) => {
                    position.offset = offset;
                    position.line = record.line;
                    lines += 1;
                    records += 1;
                    if let Some(p) = &shared.config.progress {
                        p.fetch_add(1, Ordering::Relaxed);
                    }
                    batch.push(record);
                    if batch.len() == BATCH {
                        df.input.send_batch(&mut batch);
                        batch.clear();
                        worker.step();
                    }
                }
                Item::Bad(error, line, offset) => {
                    position.offset = offset;
                    position.line = line;
                    lines += 1;
                    errors.push(error);
                }
                Item::File(opened) => {
                    if opened.file != position.file || opened.name != position.name {
                        position = Position {
                            file: opened.file,
                            name: opened.name,
                            ..Position::default()
                        };
                    }
                    if let Some(text) = opened.notice {
                        let _ = events.send(Ok(StreamEvent::Notice(text)));
                    }
                }
                Item::Failed(e) => {
                    let _ = events.send(Err(e.into()));
                    return end;
                }
            }
            // A source that never pauses still ends timed epochs, and a
            // stopped stream stops.
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            if stop.load(Ordering::Relaxed) {
                open = false;
                break;
            }
        }
        // The source ended with nothing new: no empty last epoch.
        if !open && lines == 0 && (epoch > 0 || first > 0) {
            break;
        }
        if !batch.is_empty() {
            df.input.send_batch(&mut batch);
        }
        df.input.advance_to(epoch + 1);
        df.stored.advance_to(epoch + 1);
        worker.step_or_park_while(PARK, || df.fed.less_equal(&epoch));
        lock().rows += records;
        match close_epoch(shared, epoch) {
            Ok(mut answers) => df.answers.send_batch(&mut answers),
            Err(e) => {
                let _ = events.send(Err(e));
                return end;
            }
        }
        df.answers.advance_to(epoch + 1);
        worker.step_or_park_while(PARK, || df.probe.less_equal(&epoch));
        let (partials, mut found) = {
            let mut c = lock();
            // Each epoch's sandbox reports are not kept (a long stream
            // would hold them all).
            c.sandboxes.clear();
            (
                std::mem::take(&mut c.partials),
                std::mem::take(&mut c.errors),
            )
        };
        found.append(&mut errors);
        let checked = integrity(&shared.config)
            .and_then(|()| bad_rows(&shared.config, found, epoch > 0 || first > 0))
            .and_then(|quarantined| {
                totals.add(partials);
                Ok((quarantined, totals.value(&shared.query)?))
            });
        let value = match checked {
            Ok((quarantined, value)) => {
                end.quarantined += quarantined;
                value
            }
            Err(e) => {
                let _ = events.send(Err(e));
                return end;
            }
        };
        end.records += records;
        end.lanes = totals.lanes;
        end.epochs = epoch + 1;
        let checkpoint = resume.checkpoints.as_ref().map(|stream| {
            Box::new(Checkpoint::new(
                stream.clone(),
                first + epoch + 1,
                end.records,
                end.quarantined,
                position.clone(),
                totals.clone(),
            ))
        });
        let line = EpochLine {
            epoch: first + epoch,
            records: end.records,
            value,
            lanes: totals.lanes,
            quarantined: end.quarantined,
            epoch_records: records,
            epoch_ms: started.elapsed().as_millis() as u64,
        };
        if events
            .send(Ok(StreamEvent::Epoch(line, checkpoint)))
            .is_err()
        {
            break;
        }
        epoch += 1;
    }
    // The stages that served every epoch end, and must end cleanly.
    match shared.stages.close() {
        Ok(reports) => end.sandboxes = reports,
        Err(e) => {
            let _ = events.send(Err(e));
        }
    }
    end
}

/// The reader thread: lines from `stream`'s source, typed, to `items`
/// (which waits when the dataflow is behind), and every byte read into
/// `read`. It ends when the source does, or when nobody listens.
fn read_source(
    stream: &StreamSpec,
    from: Option<Position>,
    schema: &symbiont_operators::Schema,
    used: &[bool],
    items: &SyncSender<Vec<Item>>,
    read: &Mutex<Sha256>,
    stop: &Arc<AtomicBool>,
) {
    let mut out = Chunks {
        to: items,
        chunk: Vec::with_capacity(CHUNK),
    };
    let (mut lines, resumed) = match Lines::open(&stream.source, Arc::clone(stop), from.clone()) {
        Ok(opened) => opened,
        Err(e) => return out.last(Item::Failed(e)),
    };
    let mut name = lines.path();
    if let StreamSource::Follow(_) = &stream.source {
        let notice = from.filter(|_| resumed.is_none()).map(|_| {
            format!(
                "{}: not the file the checkpoint was made in (rotated while the stream was stopped); reading it from its start",
                name.display()
            )
        });
        let opened = Opened {
            file: lines.file(),
            name: String::new(),
            notice,
        };
        if !out.push(Item::File(opened)) {
            return;
        }
    }
    if let (StreamSource::Dir(_), Some(p)) = (&stream.source, &resumed) {
        let opened = Opened {
            file: p.file,
            name: p.name.clone(),
            notice: None,
        };
        if !out.push(Item::File(opened)) {
            return;
        }
    }
    // A CSV file resumed past its header: the header is read again.
    let header = match (stream.format, &resumed) {
        (Format::Csv, Some(p)) if p.offset > 0 => lines.first.take(),
        _ => None,
    };
    let mut typer = match (stream.format, &header) {
        (Format::Csv, None) => None,
        (format, header) => match LineTyper::new(format, header.as_deref(), schema, &name) {
            Ok(t) => Some(t),
            Err(e) => return out.last(Item::Failed(e)),
        },
    };
    let mut number = resumed.map_or(0, |p| p.line);
    // Standard input has no file to name, a directory's files are named.
    let numbered = |name: &Path| match &stream.source {
        StreamSource::Stdin => stream.source.path(),
        _ => name.to_owned(),
    };
    let mut text = Vec::new();
    loop {
        // Nothing more buffered: the next read may wait, so what was read
        // goes to the dataflow first.
        if !lines.buffered() && !out.flush() {
            return;
        }
        text.clear();
        let opened = match lines.next(&mut text) {
            Ok(Some(opened)) => opened,
            Ok(None) => {
                out.flush();
                return;
            }
            Err(e) => return out.last(Item::Failed(e)),
        };
        if let Some(opened) = opened {
            // A new file: numbered from its first line, a CSV file from its
            // own header.
            number = 0;
            name = numbered(&lines.path());
            typer = match stream.format {
                Format::Csv => None,
                format => match LineTyper::new(format, None, schema, &name) {
                    Ok(t) => Some(t),
                    Err(e) => return out.last(Item::Failed(e)),
                },
            };
            if !out.push(Item::File(opened)) {
                return;
            }
        }
        read.lock().expect("one reader").update(&text);
        number += 1;
        let line = text.strip_suffix(b"\n").unwrap_or(&text);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(typer) = &typer else {
            // A CSV stream's first line is its header.
            match LineTyper::new(Format::Csv, Some(line), schema, &name) {
                Ok(t) => typer = Some(t),
                Err(e) => return out.last(Item::Failed(e)),
            }
            continue;
        };
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let offset = lines.offset();
        let item = match typer.type_line(line, schema, used, number) {
            Ok(values) => Item::Record(
                Record {
                    line: number,
                    values,
                },
                offset,
            ),
            Err(e) => Item::Bad(e, number, offset),
        };
        if !out.push(item) {
            return;
        }
    }
}

/// Items per chunk the reader hands over, and chunks the channel holds:
/// the two threads wake each other once per chunk, not per record.
const CHUNK: usize = 512;
const CHUNKS: usize = 8;

/// The reader's end of the channel, a chunk at a time.
struct Chunks<'a> {
    to: &'a SyncSender<Vec<Item>>,
    chunk: Vec<Item>,
}

impl Chunks<'_> {
    /// Adds `item`, sending the chunk once full; false if nobody listens.
    fn push(&mut self, item: Item) -> bool {
        self.chunk.push(item);
        self.chunk.len() < CHUNK || self.flush()
    }

    /// Sends what is gathered; false if nobody listens.
    fn flush(&mut self) -> bool {
        self.chunk.is_empty()
            || self
                .to
                .send(std::mem::replace(
                    &mut self.chunk,
                    Vec::with_capacity(CHUNK),
                ))
                .is_ok()
    }

    /// Sends what is gathered and a last item (the reader ends).
    fn last(&mut self, item: Item) {
        self.chunk.push(item);
        self.flush();
    }
}

/// A file a source opened ([`Item::File`]).
pub(crate) struct Opened {
    /// Its identity (device and inode; 0 for standard input).
    pub file: u64,
    /// Its name in a directory source (empty otherwise).
    pub name: String,
    /// Something to tell the user (a rotated file).
    pub notice: Option<String>,
}

/// A source's lines, whole (a followed file's last line is held back
/// until its newline is written; a directory's files are read whole, a
/// last line without its newline included).
struct Lines {
    source: StreamSource,
    reader: std::io::BufReader<Box<dyn Read + Send>>,
    /// The file being read: its identity, and the bytes read of it.
    followed: Option<(u64, u64)>,
    /// A directory source: the name of the file being read, or of the
    /// last one read (files are taken in name order, after it).
    cursor: Option<String>,
    /// Whether a directory source's file is open.
    reading: bool,
    /// The first line of a file resumed past it (a CSV file's header).
    first: Option<Vec<u8>>,
    /// Set when the stream has ended: a followed file is not waited for.
    stop: Arc<AtomicBool>,
}

/// How often a followed file or a directory is looked at again once read
/// to its end.
const POLL: Duration = Duration::from_millis(20);

fn file_reader(file: std::fs::File) -> std::io::BufReader<Box<dyn Read + Send>> {
    std::io::BufReader::with_capacity(1 << 16, Box::new(file))
}

/// Opens `path` at `p`'s offset if it is still the file `p` was in and
/// not shorter than the offset: the file, and whether it was.
fn open_at(path: &Path, p: Option<&Position>) -> Result<(std::fs::File, u64, bool), SourceError> {
    use std::io::Seek;
    let (mut file, id) = open_followed(path)?;
    let Some(p) = p.filter(|p| p.file == id) else {
        return Ok((file, id, false));
    };
    // The same inode may be another file (deleted and made again, or
    // copied over and truncated): the bytes before the offset tell.
    if !p.tail.is_empty() && tail_sha256(&file, p.offset).ok().as_ref() != Some(&p.tail) {
        return Ok((file, id, false));
    }
    let len = file.metadata().map(|m| m.len()).unwrap_or_default();
    if len < p.offset {
        return Err(SourceError::Malformed {
            path: path.to_owned(),
            reason: format!(
                "truncated to {len} bytes while the stream was stopped, after {} were read: the stream ends rather than read them twice",
                p.offset
            ),
        });
    }
    file.seek(std::io::SeekFrom::Start(p.offset))
        .map_err(|source| SourceError::Io {
            path: path.to_owned(),
            source,
        })?;
    Ok((file, id, true))
}

impl Lines {
    /// The source's lines from its start, or from `from` if its file is
    /// still there (then returned): a followed file if it is still the
    /// file `from` was in; a directory's file by its name, and the files
    /// after it.
    fn open(
        source: &StreamSource,
        stop: Arc<AtomicBool>,
        from: Option<Position>,
    ) -> Result<(Lines, Option<Position>), SourceError> {
        let mut lines = Lines {
            source: source.clone(),
            reader: std::io::BufReader::new(Box::new(std::io::empty())),
            followed: None,
            cursor: None,
            reading: false,
            first: None,
            stop,
        };
        let resumed = match source {
            StreamSource::Stdin => {
                lines.reader = std::io::BufReader::new(Box::new(std::io::stdin()));
                None
            }
            StreamSource::Follow(path) => {
                let (file, id, at) = open_at(path, from.as_ref())?;
                let resumed = from.filter(|_| at);
                if at {
                    lines.first = Some(first_line(&file, path)?);
                }
                lines.reader = file_reader(file);
                lines.followed = Some((id, resumed.as_ref().map_or(0, |p| p.offset)));
                resumed
            }
            StreamSource::Dir(dir) => {
                if !dir.is_dir() {
                    return Err(SourceError::Malformed {
                        path: dir.clone(),
                        reason: "not a directory".into(),
                    });
                }
                // Files up to the checkpoint's are done; its own is read on
                // from its offset if it is still there.
                let Some(p) = from.filter(|p| !p.name.is_empty()) else {
                    return Ok((lines, None));
                };
                lines.cursor = Some(p.name.clone());
                match open_at(&dir.join(&p.name), Some(&p)) {
                    Ok((file, id, true)) => {
                        lines.first = Some(first_line(&file, &dir.join(&p.name))?);
                        lines.reader = file_reader(file);
                        lines.followed = Some((id, p.offset));
                        lines.reading = true;
                        Some(p)
                    }
                    _ => None,
                }
            }
        };
        Ok((lines, resumed))
    }

    /// The file being read: its path (the directory's, before its first
    /// file), for messages.
    fn path(&self) -> PathBuf {
        match (&self.source, &self.cursor) {
            (StreamSource::Dir(dir), Some(name)) => dir.join(name),
            (source, _) => source.path(),
        }
    }

    /// The followed file's identity.
    fn file(&self) -> u64 {
        self.followed.map_or(0, |(id, _)| id)
    }

    /// Bytes of the file being read so far (0 for standard input).
    fn offset(&self) -> u64 {
        self.followed.map_or(0, |(_, offset)| offset)
    }

    /// A directory's next file in name order after the cursor, opened;
    /// `None` if there is none yet. Names starting with `.` (a file being
    /// written before its rename) are not taken.
    fn next_file(&mut self, dir: &Path) -> Result<Option<Opened>, SourceError> {
        let io = |source| SourceError::Io {
            path: dir.to_owned(),
            source,
        };
        let mut next: Option<String> = None;
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let later = self.cursor.as_ref().is_none_or(|c| name > *c);
            let first = next.as_ref().is_none_or(|n| name < *n);
            if later
                && first
                && !name.starts_with('.')
                && entry.file_type().is_ok_and(|t| t.is_file())
            {
                next = Some(name);
            }
        }
        let Some(name) = next else {
            return Ok(None);
        };
        let (file, id) = open_followed(&dir.join(&name))?;
        self.reader = file_reader(file);
        self.followed = Some((id, 0));
        self.cursor = Some(name.clone());
        self.reading = true;
        Ok(Some(Opened {
            file: id,
            name,
            notice: None,
        }))
    }

    /// The next whole line into `text` (with its newline), and the file
    /// it opened first if it did (a rotated followed file, a directory's
    /// next file); `None` at the end of standard input, or once the stream
    /// has stopped.
    fn next(&mut self, text: &mut Vec<u8>) -> Result<Option<Option<Opened>>, SourceError> {
        let mut opened = None;
        loop {
            if let StreamSource::Dir(dir) = &self.source
                && !self.reading
            {
                let dir = dir.clone();
                match self.next_file(&dir)? {
                    Some(o) => opened = Some(o),
                    None if self.stop.load(Ordering::Relaxed) => return Ok(None),
                    None => {
                        std::thread::sleep(POLL);
                        continue;
                    }
                }
            }
            let limit = (symbiont_operators::MAX_LINE + 1) as u64;
            let read = self.reader.by_ref().take(limit).read_until(b'\n', text);
            let n = read.map_err(|e| self.io(e))?;
            let body = text.strip_suffix(b"\n").map_or(text.len(), <[u8]>::len);
            if body > symbiont_operators::MAX_LINE {
                return Err(SourceError::Malformed {
                    path: self.path(),
                    reason: format!(
                        "a line is longer than {} bytes",
                        symbiont_operators::MAX_LINE
                    ),
                });
            }
            let Some((id, offset)) = self.followed else {
                // Standard input: a last line without its newline counts.
                return Ok((!text.is_empty()).then_some(opened));
            };
            let offset = offset + n as u64;
            self.followed = Some((id, offset));
            if text.ends_with(b"\n") {
                return Ok(Some(opened));
            }
            let path = match &self.source {
                StreamSource::Follow(path) => path.clone(),
                // A directory's file is whole: its last line counts, and
                // the next file is read after it.
                _ => {
                    self.reading = false;
                    if text.is_empty() {
                        continue;
                    }
                    return Ok(Some(opened));
                }
            };
            // At the end of the file, a partial line held: has the file
            // been truncated or replaced?
            match std::fs::metadata(&path) {
                Ok(m) if file_id(&m) != id => {
                    let (file, new) = open_followed(&path)?;
                    let notice = format!(
                        "{}: a new file at this path (rotated); reading it from its start{}",
                        path.display(),
                        if text.is_empty() {
                            ""
                        } else {
                            " (the old file's unfinished last line is dropped)"
                        }
                    );
                    opened = Some(Opened {
                        file: new,
                        name: String::new(),
                        notice: Some(notice),
                    });
                    self.reader = file_reader(file);
                    self.followed = Some((new, 0));
                    text.clear();
                }
                Ok(m) if m.len() < offset => {
                    return Err(SourceError::Malformed {
                        path: path.clone(),
                        reason: format!(
                            "truncated to {} bytes after {offset} were read: the stream ends rather than read them twice",
                            m.len()
                        ),
                    });
                }
                _ if self.stop.load(Ordering::Relaxed) => return Ok(None),
                _ => std::thread::sleep(POLL),
            }
        }
    }

    /// Whether read bytes are waiting (the next line may not block).
    fn buffered(&self) -> bool {
        !self.reader.buffer().is_empty()
    }

    fn io(&self, source: std::io::Error) -> SourceError {
        SourceError::Io {
            path: self.source.path(),
            source,
        }
    }
}

/// How many bytes before a checkpoint's offset its `tail` hashes.
const TAIL: u64 = 256;

/// The SHA-256 (hex) of the up to [`TAIL`] bytes of `file` before
/// `offset`, read without moving its position: what tells a resumed
/// stream that the file at the checkpoint's inode is still the same.
pub(crate) fn tail_sha256(file: &std::fs::File, offset: u64) -> std::io::Result<String> {
    use std::os::unix::fs::FileExt;
    let start = offset.saturating_sub(TAIL);
    let mut bytes = vec![0u8; (offset - start) as usize];
    file.read_exact_at(&mut bytes, start)?;
    Ok(symbiont_verify::hex(&Sha256::digest(&bytes)))
}

/// The checkpoint's `tail` for `position` in `source` (empty if the file
/// there is no longer the one it names).
fn tail_of(source: &StreamSource, position: &Position) -> String {
    let path = match source {
        StreamSource::Dir(dir) => dir.join(&position.name),
        other => other.path(),
    };
    open_followed(&path)
        .ok()
        .filter(|(_, id)| *id == position.file)
        .and_then(|(file, _)| tail_sha256(&file, position.offset).ok())
        .unwrap_or_default()
}

/// `file`'s first line, without its line end, read without moving its
/// position: a CSV file's header, read again when a stream resumes past
/// it.
fn first_line(file: &std::fs::File, path: &Path) -> Result<Vec<u8>, SourceError> {
    use std::os::unix::fs::FileExt;
    let io = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let mut line = vec![0u8; symbiont_operators::MAX_LINE + 2];
    let mut n = 0;
    while n < line.len() {
        let read = file.read_at(&mut line[n..], n as u64).map_err(io)?;
        if read == 0 || line[n..n + read].contains(&b'\n') {
            n += read;
            break;
        }
        n += read;
    }
    line.truncate(n);
    let end = line.iter().position(|b| *b == b'\n').unwrap_or(line.len());
    line.truncate(end);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// A followed file, opened, and its identity (device and inode).
fn open_followed(path: &Path) -> Result<(std::fs::File, u64), SourceError> {
    let io = |source| SourceError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let id = file_id(&file.metadata().map_err(io)?);
    Ok((file, id))
}

fn file_id(m: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.ino() ^ m.dev().rotate_left(32)
}

/// Blocks SIGINT and SIGTERM in the calling thread and in the threads it
/// starts from now on, and returns a flag a waiting thread sets when one
/// arrives: given as a stream's `cancel` ([`crate::JobSpec::cancel`]), it
/// ends the stream after the epoch it is in, that epoch's line and the
/// job's end written. A second signal exits at once (status 130).
pub fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.thread_block().map_err(std::io::Error::from)?;
    let flag = Arc::new(AtomicBool::new(false));
    let raised = Arc::clone(&flag);
    std::thread::spawn(move || {
        if set.wait().is_ok() {
            raised.store(true, Ordering::Relaxed);
            if set.wait().is_ok() {
                std::process::exit(130);
            }
        }
    });
    Ok(flag)
}
