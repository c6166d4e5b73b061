//! Both ends of the sandboxed stages: the decrypting aggregation stage
//! (the worker side, `symbi __stage-aggregate`, run inside the sandbox,
//! and the job side, a [`SealedStage`] that starts it in its tier), and
//! the homomorphic lane's compute stages (`__stage-homomorphic`,
//! `__stage-programmable`). A binary that runs jobs calls the worker
//! mains when it is started with their first argument.
//!
//! Protocol, version 5, over the worker's stdin and stdout (in tier 3, the
//! guest's virtio-serial port, which has no end of file). A worker serves
//! one epoch (a batch job) or every epoch of a stream, one after the
//! other, started once:
//!
//! - in: for the aggregation stage, one line of JSON first (`version`, the
//!   query, the dataset id and field names, and the dataset's data keys as
//!   hex). Then frames, each a u32 little-endian length and that many
//!   bytes: a sealed batch (or, for the homomorphic stage, an encrypted
//!   list), handed over as the job's dataflow makes it (the worker adds
//!   each as it comes and keeps only the epoch's partial aggregates).
//!   Three lengths are markers: `0`, followed by the epoch as a u64
//!   little-endian, ends that epoch's input (the worker answers it and
//!   starts the next from nothing); `u32::MAX - 1` ends the input (the
//!   worker exits 0; batches after the last epoch's end are an error);
//!   `u32::MAX`: the job abandoned the stage (it failed, or a forbidden
//!   record suspended it), and the worker opens nothing more. Input that
//!   stops before its end is an error.
//! - out: per epoch ended, one frame (a u32 little-endian length and the
//!   answer): for the aggregation stage a JSON object with its epoch, the
//!   partial aggregates, the per-record errors, the batches that did not
//!   open, and whether the worker's buffer was locked into RAM; for the
//!   homomorphic stage the epoch and its reduced columns (bincode). The
//!   job takes an answer only for the epoch it asked (one epoch's answer
//!   is not another's), and only once it has asked: an answer nobody
//!   asked for, or one longer than the stage's memory limit, ends the
//!   sandbox.
//!
//! The data keys cross the sandbox boundary because the aggregation stage
//! is the one that decrypts; the master key never does. The homomorphic
//! stage's input carries ciphertexts only.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};

use crate::{SealedFeed, SealedStage, StageOutput};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use symbiont_crypto::{DataKey, KeyId, Keystore, LockStatus, Opener, SealContext};
use symbiont_operators::{
    AggKey, Lane, LaneOpener, Partial, Query, RowError, SealedBatch, aggregate_sealed, lane_of_byte,
};

/// The first argument that makes `symbi` the stage worker.
pub const WORKER_ARG: &str = "__stage-aggregate";
const VERSION: u32 = 5;
/// The frame length that ends an epoch's input (the epoch follows).
const EPOCH_END: u32 = 0;
/// The frame length that ends the stage's input.
const CLOSED: u32 = u32::MAX - 1;
/// The frame length that tells a worker its job abandoned it.
const ABANDONED: u32 = u32::MAX;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    query: Query,
    dataset: String,
    fields: Vec<String>,
    /// `(key id hex, key hex)`.
    keys: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct Output {
    epoch: u64,
    partials: Vec<(AggKey, Partial)>,
    errors: Vec<RowError>,
    failures: Vec<RowError>,
    memory_lock: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The job abandoned the stage (it failed or was suspended): the job says
/// why, so the worker ends without a word.
#[derive(Debug, thiserror::Error)]
#[error("the job abandoned this stage before its end")]
struct Abandoned;

/// One frame of the programmable stage's input (one epoch's, from a
/// stored dataset): a u32 little-endian length and that many bytes;
/// `None` at the marker that ends the input (input that stops before it
/// is an error naming `what` it was reading).
fn read_frame(input: &mut impl Read, what: &str) -> Result<Option<Vec<u8>>> {
    match next_input(input, what)? {
        Input::Frame(bytes) => Ok(Some(bytes)),
        Input::EpochEnd(_) | Input::Closed => Ok(None),
    }
}

/// What a live worker reads next.
enum Input {
    Frame(Vec<u8>),
    /// The input of this epoch is all here: answer it.
    EpochEnd(u64),
    /// No more epochs.
    Closed,
}

fn next_input(input: &mut impl Read, what: &str) -> Result<Input> {
    let mut len = [0u8; 4];
    input
        .read_exact(&mut len)
        .with_context(|| format!("reading a {what} (the input ended before its end marker)"))?;
    match u32::from_le_bytes(len) {
        ABANDONED => Err(Abandoned.into()),
        CLOSED => Ok(Input::Closed),
        EPOCH_END => {
            let mut epoch = [0u8; 8];
            input
                .read_exact(&mut epoch)
                .context("reading the epoch that ends")?;
            Ok(Input::EpochEnd(u64::from_le_bytes(epoch)))
        }
        len => {
            let mut bytes = vec![0u8; len as usize];
            input
                .read_exact(&mut bytes)
                .with_context(|| format!("reading a {what}"))?;
            Ok(Input::Frame(bytes))
        }
    }
}

/// Writes one answer frame and flushes it.
fn write_answer(out: &mut impl Write, answer: &[u8]) -> Result<()> {
    out.write_all(&u32::try_from(answer.len())?.to_le_bytes())?;
    out.write_all(answer)?;
    out.flush()?;
    Ok(())
}

/// Runs the stage worker this process was started as, if its first
/// argument names one ([`WORKER_ARG`], [`REDUCE_ARG`], [`EVALUATE_ARG`]),
/// and exits; returns otherwise. A binary that runs jobs calls it first
/// thing in `main` (after the sandbox's init).
pub fn worker_if_asked() {
    let Some(arg) = std::env::args_os().nth(1) else {
        return;
    };
    match arg.to_str() {
        Some(WORKER_ARG) => worker_main(),
        Some(REDUCE_ARG) => reduce_worker_main(),
        Some(EVALUATE_ARG) => evaluate_worker_main(),
        _ => {}
    }
}

/// The worker: reads the header, then each epoch's batches, aggregates,
/// answers per epoch.
pub fn worker_main() -> ! {
    let code = match worker() {
        Ok(()) => 0,
        Err(e) if e.is::<Abandoned>() => 1,
        Err(e) => {
            eprintln!("symbi stage worker: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

fn worker() -> Result<()> {
    let mut input = std::io::BufReader::new(std::io::stdin().lock());
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::BufRead::read_line(&mut input, &mut line).context("reading the header")?;
    let header: Header = serde_json::from_str(&line).context("the header")?;
    anyhow::ensure!(
        header.version == VERSION,
        "protocol version {}",
        header.version
    );
    let fields: Vec<&str> = header.fields.iter().map(String::as_str).collect();
    let context = SealContext::new(&header.dataset, &fields);
    let keys: Vec<Arc<DataKey>> = header
        .keys
        .iter()
        .map(|(id, key)| {
            let id = KeyId::parse(id).context("a key id")?;
            let bytes = zeroize::Zeroizing::new(unhex(key).context("a key")?);
            Ok(Arc::new(DataKey::new(
                id,
                &bytes,
                symbiont_crypto::Backend::DEFAULT,
            )))
        })
        .collect::<Result<_>>()?;
    let opener = LaneOpener::new(Opener::new(context, keys));
    let mut out = std::io::stdout().lock();
    loop {
        // Each batch is aggregated as it comes; the first bad frame ends
        // the input, and the worker with it.
        let mut ended = Err(anyhow::anyhow!("no end"));
        let mut batches = 0usize;
        let frames = std::iter::from_fn(|| match next_input(&mut input, "batch") {
            Ok(Input::Frame(bytes)) => {
                batches += 1;
                match bytes.get(1).and_then(|b| lane_of_byte(*b)) {
                    Some(lane) => Some(SealedBatch {
                        lane,
                        bytes: bytes.into(),
                    }),
                    None => {
                        ended = Err(anyhow::anyhow!("a batch's lane"));
                        None
                    }
                }
            }
            Ok(Input::EpochEnd(epoch)) => {
                ended = Ok(Some(epoch));
                None
            }
            Ok(Input::Closed) => {
                ended = Ok(None);
                None
            }
            Err(e) => {
                ended = Err(e);
                None
            }
        });
        let (partials, errors) = aggregate_sealed(&header.query, &opener, frames);
        let Some(epoch) = ended? else {
            anyhow::ensure!(batches == 0, "batches after the last epoch's end");
            return Ok(());
        };
        let output = Output {
            epoch,
            partials,
            errors,
            failures: opener.failures(),
            memory_lock: opener.lock_status().map(|s| match s {
                LockStatus::Locked => "mlock".to_owned(),
                LockStatus::Unlocked(why) => format!("not locked: {why}"),
                LockStatus::Empty => "none".to_owned(),
            }),
        };
        write_answer(&mut out, &serde_json::to_vec(&output)?)?;
    }
}

/// A stage's name in `_meta.tiers`: its operator, and its lane in
/// brackets for the per-lane ones (`aggregate[aes_gcm]`).
pub fn stage_name(node: &symbiont_operators::PlanNode) -> String {
    match node.lane {
        Some(lane) => format!("{}[{lane}]", node.op),
        None => node.op.to_owned(),
    }
}

/// The tiers the plan gives each lane's aggregation, in [`Lane::ALL`]
/// order (`None`: all in this process), once checked that this host can
/// provide them; or why the job cannot start. `sealing` says whether the
/// job has encrypted lanes at all (without a classifier, a policy or an
/// encrypted input, every record is public).
pub fn plan_tiers(
    plan: &symbiont_operators::Plan,
    sealing: bool,
) -> std::result::Result<Option<[u8; 3]>, String> {
    let tiers = Lane::ALL.map(|l| plan.aggregate_tier(l));
    if tiers == [0, 0, 0] || !(sealing || tiers[Lane::Plaintext.index()] > 0) {
        return Ok(None);
    }
    for n in plan.nodes.iter().filter(|n| n.tier > 0) {
        symbiont_sandbox::check_available(n.tier).map_err(|e| {
            format!(
                "stage {} must run in tier {} (rule `{}`), which this host cannot provide: {e}",
                stage_name(n),
                n.tier,
                n.tier_rule
            )
        })?;
    }
    Ok(Some(tiers))
}

/// The job side: runs the worker in a sandbox of each encrypted lane's
/// tier, giving it the dataset's data keys and that lane's batches.
#[derive(Clone, Debug)]
pub struct SandboxedStage {
    /// The tier of each lane's aggregation, in [`Lane::ALL`] order (0: in
    /// this process, where no sealed batch of the lane can come from).
    pub tiers: [u8; 3],
    pub keystore: Arc<Keystore>,
    pub dataset: String,
    pub init: PathBuf,
    pub worker: PathBuf,
    /// The limits of each sandbox.
    pub limits: symbiont_sandbox::Limits,
}

impl SandboxedStage {
    fn tier_of(&self, lane: Lane) -> std::result::Result<symbiont_sandbox::Tier, String> {
        let n = self.tiers[lane.index()];
        symbiont_sandbox::Tier::from_number(n).ok_or_else(|| {
            format!(
                "{} records reached a stage the plan gave none (tier {n})",
                lane.class()
            )
        })
    }

    /// The same stage for a stream: each tier's sandbox is started once,
    /// at the first batch of a lane it serves, and serves every epoch after
    /// it until [`SealedStage::close`].
    pub fn live(self) -> LiveStage {
        LiveStage {
            stage: self,
            running: Arc::default(),
        }
    }

    fn feed(&self, query: &Query, epoch: u64, running: Arc<Running>, own: bool) -> StreamedStage {
        StreamedStage {
            stage: self.clone(),
            query: Arc::new(query.clone()),
            epoch,
            running,
            own,
            finished: AtomicBool::new(false),
            refused: Mutex::new(Vec::new()),
        }
    }
}

impl SealedStage for SandboxedStage {
    fn tier(&self, lane: Lane) -> u8 {
        self.tiers[lane.index()]
    }

    fn start(&self, query: &Query, epoch: u64) -> Box<dyn SealedFeed> {
        Box::new(self.feed(query, epoch, Arc::default(), true))
    }
}

/// A [`SandboxedStage`] whose sandboxes live across a stream's epochs.
#[derive(Debug)]
pub struct LiveStage {
    stage: SandboxedStage,
    running: Arc<Running>,
}

impl SealedStage for LiveStage {
    fn tier(&self, lane: Lane) -> u8 {
        self.stage.tier(lane)
    }

    fn start(&self, query: &Query, epoch: u64) -> Box<dyn SealedFeed> {
        Box::new(
            self.stage
                .feed(query, epoch, Arc::clone(&self.running), false),
        )
    }

    fn close(&self) -> std::result::Result<Vec<serde_json::Value>, String> {
        let running = std::mem::take(&mut *self.running.lock().expect("no panic holding it"));
        close_all(running.into_iter().map(|(_, s)| s).collect())
    }
}

/// Ends each sandbox's input, then waits for each: their reports, or
/// every failure named.
fn close_all(running: Vec<LiveSandbox>) -> std::result::Result<Vec<serde_json::Value>, String> {
    let closing: Vec<LiveSandbox> = running
        .into_iter()
        .map(|mut s| {
            s.end_input();
            s
        })
        .collect();
    let (mut reports, mut failed) = (Vec::new(), Vec::new());
    for sandbox in closing {
        match sandbox.close() {
            Ok(report) => reports.push(report),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        Ok(reports)
    } else {
        Err(failed.join("; "))
    }
}

/// How many frames wait for a stage's sandbox before the dataflow waits
/// for it (backpressure): a few MB of ciphertext.
const QUEUED_FRAMES: usize = 16;

/// What the job hands a stage's sandbox.
enum Frame {
    Bytes(Arc<[u8]>),
    /// The epoch's input is all handed over: the stage answers for it.
    EpochEnd(u64),
    /// No more epochs.
    Close,
}

/// A stage's sandbox that reads frames as the job hands them over and
/// answers at each epoch's end: frames go through a queue of
/// [`QUEUED_FRAMES`] (the job waits when it is full); each answer comes
/// back through the sandbox's output tap ([`answer_tap`]). Dropped before
/// [`LiveSandbox::close`], the sandbox is sent the abandon marker instead
/// of what is still queued, and waited for.
struct LiveSandbox {
    to: Option<SyncSender<Frame>>,
    answers: Receiver<Vec<u8>>,
    /// Epochs asked and not answered yet.
    asked: Arc<AtomicUsize>,
    /// The sandbox's end: its `_meta.sandboxes` entry, or why it failed.
    ended: Option<std::thread::JoinHandle<std::result::Result<serde_json::Value, String>>>,
    abandoned: Arc<AtomicBool>,
}

/// A stage's sandbox run: its input, the tap its answers go to, when an
/// answer is due, and its `_meta.sandboxes` entry once it has ended.
type RunSandbox = dyn FnOnce(
        FrameReader,
        symbiont_sandbox::OutputTap,
        Arc<symbiont_sandbox::AnswerDue>,
    ) -> Result<serde_json::Value>
    + Send;

impl LiveSandbox {
    /// Starts `run` on its own thread with the reader of this stage's
    /// input: `header` (which may hold keys; wiped once sent), then the
    /// frames (the job hands them over through `to`, outside any lock it
    /// holds, as sending waits while the sandbox is behind). An answer may
    /// be up to `max_answer` bytes.
    fn start(
        header: zeroize::Zeroizing<Vec<u8>>,
        max_answer: u64,
        run: Box<RunSandbox>,
    ) -> LiveSandbox {
        let (to, from) = sync_channel(QUEUED_FRAMES);
        let (answer_to, answers) = sync_channel(1);
        let asked = Arc::new(AtomicUsize::new(0));
        let abandoned = Arc::new(AtomicBool::new(false));
        let due = Arc::new(symbiont_sandbox::AnswerDue::default());
        let reader = FrameReader {
            pending: header,
            at: 0,
            from,
            abandoned: Arc::clone(&abandoned),
            frames: Arc::default(),
            due: Arc::clone(&due),
            ended: false,
        };
        let tap = answer_tap(answer_to, Arc::clone(&asked), Arc::clone(&due), max_answer);
        let ended = std::thread::spawn(move || run(reader, tap, due).map_err(|e| format!("{e:#}")));
        LiveSandbox {
            to: Some(to),
            answers,
            asked,
            ended: Some(ended),
            abandoned,
        }
    }

    /// Ends `epoch`'s input: the sandbox answers it ([`LiveSandbox::answer`]).
    fn ask(&self, epoch: u64) {
        self.asked.fetch_add(1, Ordering::SeqCst);
        if let Some(to) = &self.to {
            let _ = to.send(Frame::EpochEnd(epoch));
        }
    }

    /// Ends the sandbox's input: it exits once it has answered what it
    /// was asked.
    fn end_input(&mut self) {
        if let Some(to) = self.to.take() {
            let _ = to.send(Frame::Close);
        }
    }

    /// The answer to the oldest epoch asked; or, if the sandbox ended
    /// without it, why.
    fn answer(&mut self) -> std::result::Result<Vec<u8>, String> {
        if let Ok(answer) = self.answers.recv() {
            return Ok(answer);
        }
        // Its tap is gone: the sandbox has ended.
        self.end_input();
        match self.ended.take().map(std::thread::JoinHandle::join) {
            Some(Ok(Err(why))) => Err(why),
            Some(Err(_)) => Err("a stage thread panicked".into()),
            _ => Err("the stage ended without answering".into()),
        }
    }

    /// Ends the input; the sandbox's report once it has exited.
    fn close(mut self) -> std::result::Result<serde_json::Value, String> {
        self.end_input();
        self.ended
            .take()
            .expect("closed once")
            .join()
            .unwrap_or_else(|_| Err("a stage thread panicked".into()))
    }
}

impl Drop for LiveSandbox {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::SeqCst);
        drop(self.to.take());
        if let Some(ended) = self.ended.take() {
            let _ = ended.join();
        }
    }
}

/// The tap a live sandbox's output goes to: it cuts the output into answer
/// frames and hands each to `to`. It refuses (and the sandbox is killed)
/// an answer longer than `max`, or one that comes when no epoch was asked
/// (`asked`): a hostile stage can neither fill the job's memory nor
/// answer ahead of its input. Once every epoch asked is answered, no
/// answer is `due`.
fn answer_tap(
    to: SyncSender<Vec<u8>>,
    asked: Arc<AtomicUsize>,
    due: Arc<symbiont_sandbox::AnswerDue>,
    max: u64,
) -> symbiont_sandbox::OutputTap {
    let mut pending: Vec<u8> = Vec::new();
    Box::new(move |bytes| {
        pending.extend_from_slice(bytes);
        loop {
            let Some(len) = pending.get(..4) else {
                return true;
            };
            let len = u32::from_le_bytes(len.try_into().expect("four bytes"));
            if u64::from(len) > max {
                return false;
            }
            let end = 4 + len as usize;
            if pending.len() < end {
                return true;
            }
            let unasked = asked
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_err();
            if unasked {
                return false;
            }
            let answer = pending[4..end].to_vec();
            pending.drain(..end);
            pending.shrink_to(64 << 10);
            if asked.load(Ordering::SeqCst) == 0 {
                due.clear();
            }
            if to.send(answer).is_err() {
                return false;
            }
        }
    })
}

/// The sandboxes of a sealed stage, one per tier, each started at the
/// first batch of a lane it serves.
type Running = Mutex<Vec<(symbiont_sandbox::Tier, LiveSandbox)>>;

/// A sealed stage's epoch: its batches go to the tiers' sandboxes
/// (`running`: its own, closed at its end, or a stream's, which live on).
struct StreamedStage {
    stage: SandboxedStage,
    query: Arc<Query>,
    epoch: u64,
    running: Arc<Running>,
    /// Whether the sandboxes are this epoch's own (a batch job's).
    own: bool,
    finished: AtomicBool,
    /// Batches no tier could take (a lane the plan gave no sandbox).
    refused: Mutex<Vec<String>>,
}

impl Drop for StreamedStage {
    /// An epoch dropped unfinished (the job failed or was suspended)
    /// abandons the sandboxes it fed, a stream's too.
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            drop(std::mem::take(
                &mut *self.running.lock().expect("no panic holding it"),
            ));
        }
    }
}

impl SealedFeed for StreamedStage {
    fn send(&self, batch: SealedBatch) {
        let tier = match self.stage.tier_of(batch.lane) {
            Ok(tier) => tier,
            Err(why) => {
                self.refused.lock().expect("no panic holding it").push(why);
                return;
            }
        };
        let to = {
            let mut running = self.running.lock().expect("no panic holding it");
            let at = match running.iter().position(|(t, _)| *t == tier) {
                Some(at) => at,
                None => {
                    running.push((tier, self.stage.start_in(tier, &self.query)));
                    running.len() - 1
                }
            };
            running[at].1.to.clone()
        };
        if let Some(to) = to {
            let _ = to.send(Frame::Bytes(batch.bytes));
        }
    }

    fn finish(&self) -> std::result::Result<StageOutput, String> {
        self.finished.store(true, Ordering::SeqCst);
        let mut running = self.running.lock().expect("no panic holding it");
        let mut failed: Vec<String> = self
            .refused
            .lock()
            .expect("no panic holding it")
            .drain(..)
            .take(1)
            .collect();
        let mut total = StageOutput::default();
        // Every tier's epoch end goes out before any answer is awaited:
        // the tiers' sandboxes answer side by side.
        for (_, sandbox) in running.iter_mut() {
            sandbox.ask(self.epoch);
            // A batch job's sandbox has no other epoch.
            if self.own {
                sandbox.end_input();
            }
        }
        for (tier, sandbox) in running.iter_mut() {
            let out = sandbox.answer().and_then(|answer| {
                let out: Output = serde_json::from_slice(&answer)
                    .map_err(|e| format!("the stage worker's answer: {e}"))?;
                if out.epoch != self.epoch {
                    return Err(format!(
                        "the stage worker in tier {} answered for epoch {} when asked for epoch {}",
                        *tier as u8, out.epoch, self.epoch
                    ));
                }
                Ok(out)
            });
            match out {
                Ok(out) => {
                    total.partials.extend(out.partials);
                    total.errors.extend(out.errors);
                    total.failures.extend(out.failures);
                    total.memory_lock = match (total.memory_lock.take(), out.memory_lock) {
                        (Some(a), _) if a != "mlock" => Some(a),
                        (_, b) => b,
                    };
                }
                // Every failing tier is named, not just the first.
                Err(e) => failed.push(e),
            }
        }
        if self.own && failed.is_empty() {
            match close_all(
                std::mem::take(&mut *running)
                    .into_iter()
                    .map(|(_, s)| s)
                    .collect(),
            ) {
                Ok(reports) => total.sandboxes = reports,
                Err(e) => failed.push(e),
            }
        }
        if failed.is_empty() {
            Ok(total)
        } else {
            // A stream's sandboxes that failed are not asked again.
            drop(std::mem::take(&mut *running));
            Err(failed.join("; "))
        }
    }
}

/// A stage's input as its sandbox reads it: the header, then each frame as
/// the job hands it over, each epoch's end, then the end marker, or the
/// abandon marker if the job abandons the stage.
struct FrameReader {
    pending: zeroize::Zeroizing<Vec<u8>>,
    at: usize,
    from: Receiver<Frame>,
    abandoned: Arc<AtomicBool>,
    frames: Arc<AtomicUsize>,
    /// Set at each epoch's end: its answer is due.
    due: Arc<symbiont_sandbox::AnswerDue>,
    ended: bool,
}

impl Read for FrameReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.pending.len() {
            if self.ended {
                return Ok(0);
            }
            // The header it may hold carries the data keys.
            zeroize::Zeroize::zeroize(&mut *self.pending);
            self.at = 0;
            let frame = if self.abandoned.load(Ordering::SeqCst) {
                None
            } else {
                self.from.recv().ok()
            };
            // Checked again after the wait: the job may have abandoned the
            // stage meanwhile, and what is still queued is not handed on.
            if self.abandoned.load(Ordering::SeqCst) {
                self.end(ABANDONED);
                continue;
            }
            match frame {
                Some(Frame::Bytes(bytes)) => {
                    // The markers' lengths are not frames' lengths.
                    let len = u32::try_from(bytes.len())
                        .ok()
                        .filter(|n| ![EPOCH_END, CLOSED, ABANDONED].contains(n))
                        .ok_or_else(|| {
                            std::io::Error::other("an empty frame, or one over 4 GiB")
                        })?;
                    self.pending.extend_from_slice(&len.to_le_bytes());
                    self.pending.extend_from_slice(&bytes);
                    self.frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(Frame::EpochEnd(epoch)) => {
                    self.pending.extend_from_slice(&EPOCH_END.to_le_bytes());
                    self.pending.extend_from_slice(&epoch.to_le_bytes());
                    self.due.set();
                }
                Some(Frame::Close) => self.end(CLOSED),
                // Every sender gone without an end: abandoned.
                None => self.end(ABANDONED),
            }
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl FrameReader {
    fn end(&mut self, marker: u32) {
        self.pending.extend_from_slice(&marker.to_le_bytes());
        self.ended = true;
    }
}

/// How long a sandbox ran, in milliseconds to two places.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

impl SandboxedStage {
    /// The header of a tier's input: the query, the dataset and its data
    /// keys.
    fn header(&self, query: &Query) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let mut keys = Vec::new();
        for key in self.keystore.data_keys(&self.dataset)? {
            let bytes = self.keystore.export_data_key(key.id())?;
            keys.push((key.id().to_string(), hex(bytes.as_ref())));
        }
        let header = Header {
            version: VERSION,
            query: query.clone(),
            dataset: self.dataset.clone(),
            fields: query.schema.fields.iter().map(|(n, _)| n.clone()).collect(),
            keys,
        };
        let mut bytes = zeroize::Zeroizing::new(serde_json::to_vec(&header)?);
        drop(header);
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Starts the worker in `tier`, to be fed the batches of the lanes it
    /// serves as the dataflow seals them.
    fn start_in(&self, tier: symbiont_sandbox::Tier, query: &Query) -> LiveSandbox {
        let limits = &self.limits;
        let header = match self.header(query) {
            Ok(h) => h,
            Err(e) => {
                return LiveSandbox::start(
                    Default::default(),
                    limits.memory_bytes,
                    Box::new(move |_, _, _| Err(e)),
                );
            }
        };
        let stage = self.clone();
        LiveSandbox::start(
            header,
            limits.memory_bytes,
            Box::new(move |input, tap, due| {
                let batches = Arc::clone(&input.frames);
                let report = symbiont_sandbox::run_live_stage(
                    tier,
                    &stage.init,
                    &stage.worker,
                    &[WORKER_ARG.to_owned()],
                    &stage.limits,
                    input,
                    tap,
                    due,
                )?;
                if let Some(ended) = ended(&report, &stage.limits) {
                    anyhow::bail!(
                        "the stage worker in tier {} ({}) {ended}",
                        tier as u8,
                        symbiont_sandbox::tier_backend(tier as u8)
                    );
                }
                Ok(serde_json::json!({
                    "tier": tier as u8,
                    "runs_in": symbiont_sandbox::tier_backend(tier as u8),
                    "batches": batches.load(Ordering::Relaxed),
                    // From starting the sandbox (at the lane's first batch,
                    // while the dataflow runs) to the worker's first byte
                    // back (it answers once it has read every batch).
                    "answer_ms": report.first_output.map(ms),
                    "total_ms": ms(report.elapsed),
                }))
            }),
        )
    }
}

/// How a stage's sandbox ended, in words, unless it exited with 0.
fn ended(report: &symbiont_sandbox::Report, limits: &symbiont_sandbox::Limits) -> Option<String> {
    use symbiont_sandbox::Outcome;
    match report.outcome {
        Outcome::Exited(0) => None,
        Outcome::Exited(code) => Some(format!("exited with code {code}")),
        Outcome::Signaled(s) => Some(format!("was killed by signal {s}")),
        Outcome::MemoryLimit => Some(format!(
            "was killed at its memory limit ({} MiB; --stage-memory-mib)",
            limits.memory_bytes >> 20
        )),
        Outcome::TimedOut => Some(format!(
            "ran past its timeout ({}; --stage-timeout) and was killed",
            humantime::format_duration(limits.timeout)
        )),
        Outcome::OutputLimit => Some(format!(
            "wrote back more than its memory limit ({} MiB; --stage-memory-mib), or an answer it was not asked for, and was killed",
            limits.memory_bytes >> 20
        )),
    }
}

/// The first argument that makes `symbi` the homomorphic lane's compute
/// stage worker.
pub const REDUCE_ARG: &str = "__stage-homomorphic";

/// The homomorphic compute worker: reads the encrypted lists (each a u32
/// little-endian length and its bincode, as the job's packers fill them),
/// adds each to its column's running sum as it comes, and at each epoch's
/// end answers with that epoch and its reduced columns (bincode), then
/// starts the next epoch's sums from nothing: no sum ever adds more lists
/// than one epoch's, within the noise budget however long a stream runs.
/// Its input carries ciphertexts only, no key of any kind; it opens no
/// file.
pub fn reduce_worker_main() -> ! {
    let run = || -> Result<()> {
        let mut input = std::io::BufReader::new(std::io::stdin().lock());
        let mut out = std::io::stdout().lock();
        let mut reducer = symbiont_operators::Reducer::default();
        let mut lists = 0usize;
        loop {
            match next_input(&mut input, "list")? {
                Input::Frame(bytes) => {
                    let list: symbiont_operators::PackedList =
                        bincode::deserialize(&bytes).context("a list")?;
                    reducer.add(&list)?;
                    lists += 1;
                }
                Input::EpochEnd(epoch) => {
                    let reduced = std::mem::take(&mut reducer).finish();
                    write_answer(&mut out, &bincode::serialize(&(epoch, reduced))?)?;
                    lists = 0;
                }
                Input::Closed => {
                    anyhow::ensure!(lists == 0, "lists after the last epoch's end");
                    return Ok(());
                }
            }
        }
    };
    exit_with("homomorphic", run());
}

/// Ends a compute worker: exit 0, or the error on stderr and exit 1 (an
/// abandoned worker's job says why).
fn exit_with(stage: &str, ran: Result<()>) -> ! {
    let code = match ran {
        Ok(()) => 0,
        Err(e) if e.is::<Abandoned>() => 1,
        Err(e) => {
            eprintln!("symbi {stage} stage: {e:#}");
            1
        }
    };
    std::process::exit(code);
}

/// Where a homomorphic compute worker runs: its tier, the binaries that
/// set up the sandbox and run the worker, and the sandbox's limits.
#[derive(Clone, Debug)]
pub struct ComputeSandbox {
    pub tier: symbiont_sandbox::Tier,
    pub init: PathBuf,
    pub worker: PathBuf,
    pub limits: symbiont_sandbox::Limits,
}

impl ComputeSandbox {
    /// Its `_meta.sandboxes` entry: `stage`, tier, timings and `details`.
    fn report(
        &self,
        stage: &str,
        report: &symbiont_sandbox::Report,
        details: serde_json::Value,
    ) -> serde_json::Value {
        let tier = self.tier as u8;
        let mut sandbox = serde_json::json!({
            "stage": stage,
            "tier": tier,
            "runs_in": symbiont_sandbox::tier_backend(tier),
            "answer_ms": report.first_output.map(ms),
            "total_ms": ms(report.elapsed),
        });
        if let (Some(entry), serde_json::Value::Object(details)) =
            (sandbox.as_object_mut(), details)
        {
            entry.extend(details);
        }
        sandbox
    }

    /// Why the `what` compute stage ended, unless it exited with 0.
    fn check(&self, what: &str, report: &symbiont_sandbox::Report) -> Result<()> {
        if let Some(ended) = ended(report, &self.limits) {
            anyhow::bail!(
                "the {what} compute stage in tier {} ({}) {ended}",
                self.tier as u8,
                symbiont_sandbox::tier_backend(self.tier as u8)
            );
        }
        Ok(())
    }

    /// Runs the `what` worker (`arg`) with `input` on its stdin: its
    /// answer, and its `_meta.sandboxes` entry; or why it has no answer.
    fn run(
        &self,
        what: &str,
        stage: &str,
        arg: &str,
        input: impl Read + Send + 'static,
        details: serde_json::Value,
    ) -> Result<(Vec<u8>, serde_json::Value)> {
        let (report, out) = symbiont_sandbox::run_stage(
            self.tier,
            &self.init,
            &self.worker,
            &[arg.to_owned()],
            &self.limits,
            input,
        )?;
        self.check(what, &report)?;
        Ok((out, self.report(stage, &report, details)))
    }

    /// Starts the homomorphic compute worker, fed lists as they come and
    /// answering per epoch.
    fn start_reduce(&self) -> LiveSandbox {
        let sandbox = self.clone();
        LiveSandbox::start(
            Default::default(),
            self.limits.memory_bytes,
            Box::new(move |input, tap, due| {
                let lists = Arc::clone(&input.frames);
                let report = symbiont_sandbox::run_live_stage(
                    sandbox.tier,
                    &sandbox.init,
                    &sandbox.worker,
                    &[REDUCE_ARG.to_owned()],
                    &sandbox.limits,
                    input,
                    tap,
                    due,
                )?;
                sandbox.check("homomorphic", &report)?;
                let lists = lists.load(Ordering::Relaxed);
                Ok(sandbox.report(
                    "aggregate[homomorphic]",
                    &report,
                    serde_json::json!({ "lists": lists }),
                ))
            }),
        )
    }
}

/// The job side of the homomorphic compute stage: runs the worker in its
/// tier, started at the first full list, with the lists on its stdin as
/// the packers fill them.
#[derive(Debug)]
pub struct SandboxedReduce {
    pub sandbox: ComputeSandbox,
    /// A stream's worker, which serves every epoch (`None`: a batch job's,
    /// started per epoch).
    live: Option<Arc<Mutex<Option<LiveSandbox>>>>,
}

impl std::fmt::Debug for LiveSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveSandbox").finish_non_exhaustive()
    }
}

impl SandboxedReduce {
    /// A batch job's: one worker per epoch.
    pub fn new(sandbox: ComputeSandbox) -> SandboxedReduce {
        SandboxedReduce {
            sandbox,
            live: None,
        }
    }

    /// A stream's: one worker, started at the first list, for every epoch
    /// until [`crate::HomomorphicStage::close`].
    pub fn live(sandbox: ComputeSandbox) -> SandboxedReduce {
        SandboxedReduce {
            sandbox,
            live: Some(Arc::default()),
        }
    }
}

impl crate::HomomorphicStage for SandboxedReduce {
    fn start(&self, epoch: u64) -> Box<dyn crate::ListFeed> {
        Box::new(StreamedReduce {
            sandbox: self.sandbox.clone(),
            epoch,
            own: self.live.is_none(),
            running: self.live.clone().unwrap_or_default(),
            finished: AtomicBool::new(false),
            unsent: Mutex::new(None),
        })
    }

    fn close(&self) -> std::result::Result<Vec<serde_json::Value>, String> {
        let running = self
            .live
            .as_ref()
            .and_then(|l| l.lock().expect("no panic holding it").take());
        close_all(running.into_iter().collect())
    }
}

/// A [`SandboxedReduce`]'s epoch.
struct StreamedReduce {
    sandbox: ComputeSandbox,
    epoch: u64,
    /// Whether the worker is this epoch's own (a batch job's).
    own: bool,
    running: Arc<Mutex<Option<LiveSandbox>>>,
    finished: AtomicBool,
    /// The first list that could not be encoded.
    unsent: Mutex<Option<String>>,
}

impl Drop for StreamedReduce {
    /// An epoch dropped unfinished abandons the worker, a stream's too.
    fn drop(&mut self) {
        if !self.finished.load(Ordering::SeqCst) {
            drop(self.running.lock().expect("no panic holding it").take());
        }
    }
}

impl crate::ListFeed for StreamedReduce {
    fn send(&self, lists: Vec<symbiont_operators::PackedList>) {
        for list in lists {
            let bytes = match bincode::serialize(&list) {
                Ok(b) => b,
                Err(e) => {
                    let mut unsent = self.unsent.lock().expect("no panic holding it");
                    unsent.get_or_insert_with(|| format!("encoding a list: {e}"));
                    return;
                }
            };
            let to = {
                let mut running = self.running.lock().expect("no panic holding it");
                let sandbox = running.get_or_insert_with(|| self.sandbox.start_reduce());
                sandbox.to.clone()
            };
            if let Some(to) = to {
                let _ = to.send(Frame::Bytes(bytes.into()));
            }
        }
    }

    fn finish(&self) -> std::result::Result<crate::ReducedColumns, String> {
        self.finished.store(true, Ordering::SeqCst);
        if let Some(why) = self.unsent.lock().expect("no panic holding it").take() {
            return Err(why);
        }
        let mut running = self.running.lock().expect("no panic holding it");
        let Some(sandbox) = running.as_mut() else {
            return Ok((Vec::new(), None));
        };
        sandbox.ask(self.epoch);
        if self.own {
            sandbox.end_input();
        }
        let answered = sandbox.answer().and_then(|answer| {
            let (epoch, reduced): (u64, _) = symbiont_operators::decode_stage_answer(&answer)
                .map_err(|e| format!("the compute stage's answer: {e}"))?;
            if epoch != self.epoch {
                return Err(format!(
                    "the homomorphic compute stage answered for epoch {epoch} when asked for epoch {}",
                    self.epoch
                ));
            }
            Ok(reduced)
        });
        let reduced = match answered {
            Ok(reduced) => reduced,
            Err(e) => {
                // Not asked again.
                drop(running.take());
                return Err(e);
            }
        };
        let report = match self.own {
            true => Some(running.take().expect("running").close()?),
            false => None,
        };
        Ok((reduced, report))
    }
}

/// The first argument that makes `symbi` the programmable path's compute
/// worker.
pub const EVALUATE_ARG: &str = "__stage-programmable";

/// The programmable compute stage's limits: the job's, with at least
/// 1 GiB of memory (the server key alone is 180 MB once decompressed) and
/// 30 minutes (an encrypted comparison costs a fraction of a second per
/// record and core).
pub fn evaluate_limits(limits: &symbiont_sandbox::Limits) -> symbiont_sandbox::Limits {
    symbiont_sandbox::Limits {
        memory_bytes: limits.memory_bytes.max(1 << 30),
        timeout: limits.timeout.max(std::time::Duration::from_secs(30 * 60)),
        ..limits.clone()
    }
}

/// The programmable stage's stdin: the compressed server key, the spec
/// (bincode), then one frame per record's list, then the end marker.
pub(crate) fn evaluate_input(
    server: &[u8],
    spec: &symbiont_crypto::programmable::Spec,
    records: &[Vec<u8>],
) -> Result<Vec<u8>> {
    let spec = bincode::serialize(spec)?;
    let mut input = Vec::new();
    for frame in [server, &spec[..]]
        .into_iter()
        .chain(records.iter().map(Vec::as_slice))
    {
        input.extend_from_slice(&u32::try_from(frame.len())?.to_le_bytes());
        input.extend_from_slice(frame);
    }
    input.extend_from_slice(&CLOSED.to_le_bytes());
    Ok(input)
}

/// The programmable compute worker: reads the server key, the spec and the
/// records, answers with the encrypted aggregates (bincode). It opens no
/// file and never sees the client key.
pub fn evaluate_worker_main() -> ! {
    let run = || -> Result<()> {
        let mut input = std::io::BufReader::new(std::io::stdin().lock());
        let server = read_frame(&mut input, "server key")?.context("no server key")?;
        let spec = read_frame(&mut input, "spec")?.context("no spec")?;
        let spec: symbiont_crypto::programmable::Spec =
            bincode::deserialize(&spec).context("the spec")?;
        let mut records = Vec::new();
        while let Some(bytes) = read_frame(&mut input, "record")? {
            records.push(bytes);
        }
        let out = symbiont_crypto::programmable::evaluate(&server, &records, &spec)?;
        let mut stdout = std::io::stdout().lock();
        stdout.write_all(&bincode::serialize(&out)?)?;
        stdout.flush()?;
        Ok(())
    };
    exit_with("programmable", run());
}

/// The job side of the programmable compute stage: runs the worker in its
/// tier with the server key and the records on its stdin.
#[derive(Debug)]
pub struct SandboxedEvaluate {
    pub sandbox: ComputeSandbox,
    /// Where the server key is read (by the job, not the stage).
    pub keystore: PathBuf,
}

impl crate::ProgrammableStage for SandboxedEvaluate {
    fn evaluate(
        &self,
        spec: &symbiont_crypto::programmable::Spec,
        records: Vec<Vec<u8>>,
    ) -> std::result::Result<
        (
            Vec<symbiont_crypto::programmable::Encrypted>,
            Option<serde_json::Value>,
        ),
        String,
    > {
        let run = || -> Result<_> {
            let server = Keystore::programmable_server_key(&self.keystore)?;
            let input = evaluate_input(&server, spec, &records)?;
            drop(server);
            let (out, sandbox) = self.sandbox.run(
                "programmable",
                "aggregate[homomorphic, programmable]",
                EVALUATE_ARG,
                std::io::Cursor::new(zeroize::Zeroizing::new(input)),
                serde_json::json!({
                    "records": records.len(),
                    "comparisons": spec.comparisons.len(),
                }),
            )?;
            let encrypted = symbiont_operators::decode_stage_answer(&out)
                .context("the compute stage's answer")?;
            Ok((encrypted, Some(sandbox)))
        };
        run().map_err(|e| format!("{e:#}"))
    }
}
