//! Both ends of the sandboxed stages: the decrypting aggregation stage
//! (the worker side, `symbi __stage-aggregate`, run inside the sandbox,
//! and the job side, a [`SealedStage`] that starts it in its tier), and
//! the homomorphic lane's compute stages (`__stage-homomorphic`,
//! `__stage-programmable`). A binary that runs jobs calls the worker
//! mains when it is started with their first argument.
//!
//! Protocol, version 4, over the worker's stdin and stdout (in tier 3, the
//! guest's virtio-serial port, which has no end of file):
//!
//! - in: one line of JSON (`version`, the epoch whose batches it is given,
//!   the query, the dataset id and field names, and the dataset's data
//!   keys as hex), then the epoch's sealed batches
//!   as the job's dataflow makes them (the worker aggregates each as it
//!   comes and keeps only the partial aggregates), each a u32
//!   little-endian length and the batch's bytes, then a length of 0 that
//!   ends the input. Input that stops before it is an error, and so is
//!   the length `u32::MAX`: the job abandoned the stage (it failed, or a
//!   forbidden record suspended it), and the worker opens nothing more;
//! - out: one JSON object: its epoch, the partial aggregates, the
//!   per-record errors, the batches that did not open, and whether the
//!   worker's buffer was locked into RAM. The job takes the answer only
//!   for the epoch it asked (one epoch's answer is not another's).
//!
//! The data keys cross the sandbox boundary because this stage is the one
//! that decrypts; the master key never does.

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
const VERSION: u32 = 4;
/// The frame length that tells a worker its job abandoned it.
const ABANDONED: u32 = u32::MAX;

#[derive(Serialize, Deserialize)]
struct Header {
    version: u32,
    epoch: u64,
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

/// One frame of a stage's input: a u32 little-endian length and that many
/// bytes; `None` at the zero length that ends the input (input that stops
/// before it is an error naming `what` it was reading).
fn read_frame(input: &mut impl Read, what: &str) -> Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    input
        .read_exact(&mut len)
        .with_context(|| format!("reading a {what} (the input ended before its end marker)"))?;
    let len = u32::from_le_bytes(len);
    if len == ABANDONED {
        return Err(Abandoned.into());
    }
    let len = len as usize;
    if len == 0 {
        return Ok(None);
    }
    let mut bytes = vec![0u8; len];
    input
        .read_exact(&mut bytes)
        .with_context(|| format!("reading a {what}"))?;
    Ok(Some(bytes))
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

/// The worker: reads the header and the batches, aggregates, answers.
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
    // Each batch is aggregated as it comes; the first bad frame ends the
    // input, and the worker with it.
    let mut bad_frame = None;
    let batches = std::iter::from_fn(|| {
        let batch = read_frame(&mut input, "batch").and_then(|frame| {
            frame
                .map(|bytes| {
                    let lane = bytes
                        .get(1)
                        .and_then(|b| lane_of_byte(*b))
                        .context("a batch's lane")?;
                    Ok(SealedBatch {
                        lane,
                        bytes: bytes.into(),
                    })
                })
                .transpose()
        });
        batch.unwrap_or_else(|e| {
            bad_frame = Some(e);
            None
        })
    });
    let (partials, errors) = aggregate_sealed(&header.query, &opener, batches);
    if let Some(e) = bad_frame {
        return Err(e);
    }
    let output = Output {
        epoch: header.epoch,
        partials,
        errors,
        failures: opener.failures(),
        memory_lock: opener.lock_status().map(|s| match s {
            LockStatus::Locked => "mlock".to_owned(),
            LockStatus::Unlocked(why) => format!("not locked: {why}"),
            LockStatus::Empty => "none".to_owned(),
        }),
    };
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, &output)?;
    out.flush()?;
    Ok(())
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
}

impl SealedStage for SandboxedStage {
    fn tier(&self, lane: Lane) -> u8 {
        self.tiers[lane.index()]
    }

    fn start(&self, query: &Query, epoch: u64) -> Box<dyn SealedFeed> {
        Box::new(StreamedStage {
            stage: self.clone(),
            query: Arc::new(query.clone()),
            epoch,
            running: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
        })
    }
}

/// How many frames wait for a stage's sandbox before the dataflow waits
/// for it (backpressure): a few MB of ciphertext.
const QUEUED_FRAMES: usize = 16;

/// A stage's sandbox that reads frames as the job hands them over: they go
/// through a queue of [`QUEUED_FRAMES`] (the job waits when it is full),
/// then the end marker ([`Streamed::finish`]); dropped unfinished, the
/// sandbox is sent the abandon marker instead of what is still queued,
/// and waited for.
struct Streamed<T> {
    to: Option<SyncSender<Frame>>,
    answer: Option<std::thread::JoinHandle<std::result::Result<T, String>>>,
    abandoned: Arc<AtomicBool>,
    /// Frames read by the sandbox so far.
    frames: Arc<AtomicUsize>,
}

impl<T: Send + 'static> Streamed<T> {
    /// Starts `run` on its own thread with the reader of this stage's
    /// input: `header` (which may hold keys; wiped once sent), then the
    /// frames.
    fn start(
        header: zeroize::Zeroizing<Vec<u8>>,
        run: impl FnOnce(FrameReader) -> Result<T> + Send + 'static,
    ) -> Streamed<T> {
        let (to, from) = sync_channel(QUEUED_FRAMES);
        let abandoned = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(AtomicUsize::new(0));
        let reader = FrameReader {
            pending: header,
            at: 0,
            from,
            abandoned: Arc::clone(&abandoned),
            frames: Arc::clone(&frames),
            ended: false,
        };
        let answer = std::thread::spawn(move || run(reader).map_err(|e| format!("{e:#}")));
        Streamed {
            to: Some(to),
            answer: Some(answer),
            abandoned,
            frames,
        }
    }

    /// Hands the sandbox one frame; waits while it is behind. A sandbox
    /// that has ended takes nothing ([`Streamed::finish`] says why).
    fn send(to: &SyncSender<Frame>, bytes: Arc<[u8]>) {
        let _ = to.send(Frame::Bytes(bytes));
    }

    /// Ends the input; the sandbox's answer.
    fn finish(mut self) -> std::result::Result<T, String> {
        if let Some(to) = self.to.take() {
            let _ = to.send(Frame::End);
        }
        self.answer
            .take()
            .expect("finished once")
            .join()
            .unwrap_or_else(|_| Err("a stage thread panicked".into()))
    }
}

impl<T> Drop for Streamed<T> {
    fn drop(&mut self) {
        self.abandoned.store(true, Ordering::SeqCst);
        drop(self.to.take());
        if let Some(answer) = self.answer.take() {
            let _ = answer.join();
        }
    }
}

/// A sealed stage that is running: one [`Streamed`] sandbox per tier, each
/// started at the first batch of a lane it serves.
struct StreamedStage {
    stage: SandboxedStage,
    query: Arc<Query>,
    epoch: u64,
    running: Mutex<Vec<(symbiont_sandbox::Tier, Streamed<StageOutput>)>>,
    /// Batches no tier could take (a lane the plan gave no sandbox).
    refused: Mutex<Vec<String>>,
}

/// What the job hands a stage's sandbox.
enum Frame {
    Bytes(Arc<[u8]>),
    /// Everything has been handed over.
    End,
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
                    running.push((tier, self.stage.start_in(tier, &self.query, self.epoch)));
                    running.len() - 1
                }
            };
            running[at].1.to.clone().expect("not finished")
        };
        Streamed::<StageOutput>::send(&to, batch.bytes);
    }

    fn finish(&self) -> std::result::Result<StageOutput, String> {
        let running = std::mem::take(&mut *self.running.lock().expect("no panic holding it"));
        let mut failed: Vec<String> = self
            .refused
            .lock()
            .expect("no panic holding it")
            .drain(..)
            .take(1)
            .collect();
        let mut total = StageOutput::default();
        // Every tier's end marker goes out before any answer is awaited:
        // the tiers' sandboxes finish side by side.
        let ending: Vec<_> = running
            .into_iter()
            .map(|(_, mut streamed)| {
                if let Some(to) = streamed.to.take() {
                    let _ = to.send(Frame::End);
                }
                streamed
            })
            .collect();
        for streamed in ending {
            match streamed.finish() {
                Ok(out) => {
                    total.partials.extend(out.partials);
                    total.errors.extend(out.errors);
                    total.failures.extend(out.failures);
                    total.sandboxes.extend(out.sandboxes);
                    total.memory_lock = match (total.memory_lock.take(), out.memory_lock) {
                        (Some(a), _) if a != "mlock" => Some(a),
                        (_, b) => b,
                    };
                }
                // Every failing tier is named, not just the first.
                Err(e) => failed.push(e),
            }
        }
        if failed.is_empty() {
            Ok(total)
        } else {
            Err(failed.join("; "))
        }
    }
}

/// A stage's input as its sandbox reads it: the header, then each frame as
/// the job hands it over, then the end marker, or the abandon marker if
/// the job abandons the stage.
struct FrameReader {
    pending: zeroize::Zeroizing<Vec<u8>>,
    at: usize,
    from: Receiver<Frame>,
    abandoned: Arc<AtomicBool>,
    frames: Arc<AtomicUsize>,
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
                    // 0 would read as the end marker, and the largest
                    // length as the abandon marker.
                    let len = u32::try_from(bytes.len())
                        .ok()
                        .filter(|n| *n > 0 && *n < ABANDONED)
                        .ok_or_else(|| {
                            std::io::Error::other("an empty frame, or one over 4 GiB")
                        })?;
                    self.pending.extend_from_slice(&len.to_le_bytes());
                    self.pending.extend_from_slice(&bytes);
                    self.frames.fetch_add(1, Ordering::Relaxed);
                }
                Some(Frame::End) => self.end(0),
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

impl SandboxedStage {
    /// The header of a tier's input: the query, the dataset and its data
    /// keys.
    fn header(&self, query: &Query, epoch: u64) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let mut keys = Vec::new();
        for key in self.keystore.data_keys(&self.dataset)? {
            let bytes = self.keystore.export_data_key(key.id())?;
            keys.push((key.id().to_string(), hex(bytes.as_ref())));
        }
        let header = Header {
            version: VERSION,
            epoch,
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
    fn start_in(
        &self,
        tier: symbiont_sandbox::Tier,
        query: &Query,
        epoch: u64,
    ) -> Streamed<StageOutput> {
        let header = match self.header(query, epoch) {
            Ok(h) => h,
            Err(e) => return Streamed::start(Default::default(), move |_| Err(e)),
        };
        let stage = self.clone();
        Streamed::start(header, move |input| {
            let batches = Arc::clone(&input.frames);
            let (report, out) = symbiont_sandbox::run_stage(
                tier,
                &stage.init,
                &stage.worker,
                &[WORKER_ARG.to_owned()],
                &stage.limits,
                input,
            )?;
            if let Some(ended) = ended(&report, &stage.limits) {
                anyhow::bail!(
                    "the stage worker in tier {} ({}) {ended}",
                    tier as u8,
                    symbiont_sandbox::tier_backend(tier as u8)
                );
            }
            let output: Output =
                serde_json::from_slice(&out).context("the stage worker's answer")?;
            anyhow::ensure!(
                output.epoch == epoch,
                "the stage worker in tier {} answered for epoch {} when asked for epoch {epoch}",
                tier as u8,
                output.epoch
            );
            let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
            Ok(StageOutput {
                partials: output.partials,
                errors: output.errors,
                failures: output.failures,
                memory_lock: output.memory_lock,
                sandboxes: vec![serde_json::json!({
                    "tier": tier as u8,
                    "runs_in": symbiont_sandbox::tier_backend(tier as u8),
                    "batches": batches.load(Ordering::Relaxed),
                    // From starting the sandbox (at the lane's first batch,
                    // while the dataflow runs) to the worker's first byte
                    // back (it answers once it has read every batch).
                    "answer_ms": report.first_output.map(ms),
                    "total_ms": ms(report.elapsed),
                })],
            })
        })
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
            "wrote back more than its memory limit ({} MiB; --stage-memory-mib) and was killed",
            limits.memory_bytes >> 20
        )),
    }
}

/// The first argument that makes `symbi` the homomorphic lane's compute
/// stage worker.
pub const REDUCE_ARG: &str = "__stage-homomorphic";

/// The homomorphic compute worker: reads the encrypted lists (each a u32
/// little-endian length and its bincode, as the job's packers fill them,
/// then a length of 0, or the abandon marker), adds each to its column's
/// running sum as it comes, and answers with the reduced columns
/// (bincode). Its input carries ciphertexts only, no key of any kind; it
/// opens no file.
pub fn reduce_worker_main() -> ! {
    answer_and_exit("homomorphic", || {
        let mut input = std::io::BufReader::new(std::io::stdin().lock());
        let mut reducer = symbiont_operators::Reducer::default();
        while let Some(bytes) = read_frame(&mut input, "list")? {
            let list: symbiont_operators::PackedList =
                bincode::deserialize(&bytes).context("a list")?;
            reducer.add(&list)?;
        }
        Ok(bincode::serialize(&reducer.finish())?)
    })
}

/// Ends a compute worker: its answer on stdout and exit 0, or the error on
/// stderr and exit 1.
fn answer_and_exit(stage: &str, run: impl FnOnce() -> Result<Vec<u8>>) -> ! {
    let answer = run();
    // Abandoned by its job, which says why.
    if answer.as_ref().is_err_and(|e| e.is::<Abandoned>()) {
        std::process::exit(1);
    }
    let written = answer.and_then(|answer| {
        let mut out = std::io::stdout().lock();
        out.write_all(&answer)?;
        out.flush()?;
        Ok(())
    });
    let code = match written {
        Ok(()) => 0,
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
    /// Runs the `what` worker (`arg`) with `input` on its stdin: its
    /// answer, and its `_meta.sandboxes` entry (`stage`, tier, timings and
    /// `details`); or why it has no answer.
    fn run(
        &self,
        what: &str,
        stage: &str,
        arg: &str,
        input: impl Read + Send + 'static,
        details: serde_json::Value,
    ) -> Result<(Vec<u8>, serde_json::Value)> {
        let tier = self.tier as u8;
        let (report, out) = symbiont_sandbox::run_stage(
            self.tier,
            &self.init,
            &self.worker,
            &[arg.to_owned()],
            &self.limits,
            input,
        )?;
        if let Some(ended) = ended(&report, &self.limits) {
            anyhow::bail!(
                "the {what} compute stage in tier {tier} ({}) {ended}",
                symbiont_sandbox::tier_backend(tier)
            );
        }
        let ms = |d: std::time::Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
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
        Ok((out, sandbox))
    }
}

/// The job side of the homomorphic compute stage: runs the worker in its
/// tier, started at the first full list, with the lists on its stdin as
/// the packers fill them.
#[derive(Debug)]
pub struct SandboxedReduce(pub ComputeSandbox);

impl crate::HomomorphicStage for SandboxedReduce {
    fn start(&self) -> Box<dyn crate::ListFeed> {
        Box::new(StreamedReduce {
            sandbox: self.0.clone(),
            running: Mutex::new(None),
            unsent: Mutex::new(None),
        })
    }
}

/// A compute stage's answer and its `_meta.sandboxes` entry.
type Answered = (Vec<u8>, serde_json::Value);

/// A [`SandboxedReduce`] that is running.
struct StreamedReduce {
    sandbox: ComputeSandbox,
    running: Mutex<Option<Streamed<Answered>>>,
    /// The first list that could not be encoded.
    unsent: Mutex<Option<String>>,
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
                let streamed = running.get_or_insert_with(|| {
                    let sandbox = self.sandbox.clone();
                    Streamed::start(Default::default(), move |input| {
                        sandbox.run(
                            "homomorphic",
                            "aggregate[homomorphic]",
                            REDUCE_ARG,
                            input,
                            serde_json::json!({}),
                        )
                    })
                });
                streamed.to.clone().expect("not finished")
            };
            Streamed::<()>::send(&to, bytes.into());
        }
    }

    fn finish(&self) -> std::result::Result<crate::ReducedColumns, String> {
        if let Some(why) = self.unsent.lock().expect("no panic holding it").take() {
            return Err(why);
        }
        let Some(streamed) = self.running.lock().expect("no panic holding it").take() else {
            return Ok((Vec::new(), None));
        };
        let lists = Arc::clone(&streamed.frames);
        let (out, mut sandbox) = streamed.finish()?;
        sandbox["lists"] = lists.load(Ordering::Relaxed).into();
        let reduced = symbiont_operators::decode_stage_answer(&out)
            .map_err(|e| format!("the compute stage's answer: {e}"))?;
        Ok((reduced, Some(sandbox)))
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
/// (bincode), then one frame per record's list, then an empty frame.
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
    input.extend_from_slice(&0u32.to_le_bytes());
    Ok(input)
}

/// The programmable compute worker: reads the server key, the spec and the
/// records, answers with the encrypted aggregates (bincode). It opens no
/// file and never sees the client key.
pub fn evaluate_worker_main() -> ! {
    answer_and_exit("programmable", || {
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
        Ok(bincode::serialize(&out)?)
    })
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
