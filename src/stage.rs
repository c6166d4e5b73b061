//! The decrypting aggregation stage in a sandbox: the worker side
//! (`symbi __stage-aggregate`, run inside the sandbox) and the job side
//! (a [`SealedStage`] that starts it in its tier).
//!
//! Protocol, version 1, over the worker's stdin and stdout:
//!
//! - in: one line of JSON (`version`, the query, the dataset id and field
//!   names, and the dataset's data keys as hex), then the sealed batches,
//!   each a u32 little-endian length and the batch's bytes;
//! - out: one JSON object: the partial aggregates, the per-record errors,
//!   the batches that did not open, and whether the worker's buffer was
//!   locked into RAM.
//!
//! The data keys cross the sandbox boundary because this stage is the one
//! that decrypts; the master key never does.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use symbiont_crypto::{DataKey, KeyId, Keystore, LockStatus, Opener, SealContext};
use symbiont_engine::{SealedStage, StageOutput};
use symbiont_operators::{
    AggKey, Lane, LaneOpener, Partial, Query, RowError, SealedBatch, aggregate_sealed, lane_of_byte,
};

/// The first argument that makes `symbi` the stage worker.
pub(crate) const WORKER_ARG: &str = "__stage-aggregate";
const VERSION: u32 = 1;

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

/// The worker: reads the header and the batches, aggregates, answers.
pub(crate) fn worker_main() -> ! {
    let code = match worker() {
        Ok(()) => 0,
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
    let mut batches = Vec::new();
    loop {
        let mut len = [0u8; 4];
        match input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e).context("reading a batch"),
        }
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        input.read_exact(&mut bytes).context("reading a batch")?;
        let lane = bytes
            .get(1)
            .and_then(|b| lane_of_byte(*b))
            .context("a batch's lane")?;
        batches.push(SealedBatch {
            lane,
            bytes: bytes.into(),
        });
    }
    let (partials, errors) = aggregate_sealed(&header.query, &opener, batches);
    let output = Output {
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

/// The tier of each encrypted lane's stage: one tier for both, or the
/// risk rule (`auto`): confidential records are decrypted in tier 1,
/// restricted ones, the more sensitive, in tier 2.
pub(crate) fn lane_tiers(spec: &str) -> Option<[symbiont_sandbox::Tier; 2]> {
    use symbiont_sandbox::Tier;
    match spec {
        "auto" => Some([Tier::Native, Tier::Gvisor]),
        n => {
            let t = Tier::from_number(n.parse().ok()?)?;
            Some([t, t])
        }
    }
}

/// The job side: runs the worker in a sandbox of each encrypted lane's
/// tier, giving it the dataset's data keys and that lane's batches.
#[derive(Debug)]
pub(crate) struct SandboxedStage {
    /// The tiers of the confidential and restricted lanes.
    pub(crate) tiers: [symbiont_sandbox::Tier; 2],
    pub(crate) keystore: Arc<Keystore>,
    pub(crate) dataset: String,
    pub(crate) init: PathBuf,
    pub(crate) worker: PathBuf,
}

impl SandboxedStage {
    fn tier_of(&self, lane: Lane) -> symbiont_sandbox::Tier {
        match lane {
            Lane::Homomorphic => self.tiers[1],
            _ => self.tiers[0],
        }
    }
}

impl SealedStage for SandboxedStage {
    fn tier(&self, lane: Lane) -> u8 {
        self.tier_of(lane) as u8
    }

    fn aggregate(
        &self,
        query: &Query,
        batches: Vec<SealedBatch>,
    ) -> std::result::Result<StageOutput, String> {
        // One sandbox per tier, with the batches of the lanes it serves.
        let mut total = StageOutput::default();
        let mut by_tier: Vec<(symbiont_sandbox::Tier, Vec<SealedBatch>)> = Vec::new();
        for b in batches {
            let tier = self.tier_of(b.lane);
            match by_tier.iter_mut().find(|(t, _)| *t == tier) {
                Some((_, v)) => v.push(b),
                None => by_tier.push((tier, vec![b])),
            }
        }
        for (tier, batches) in by_tier {
            let out = self.run_in(tier, query, batches)?;
            total.partials.extend(out.partials);
            total.errors.extend(out.errors);
            total.failures.extend(out.failures);
            total.memory_lock = match (total.memory_lock.take(), out.memory_lock) {
                (Some(a), _) if a != "mlock" => Some(a),
                (_, b) => b,
            };
        }
        Ok(total)
    }
}

impl SandboxedStage {
    fn run_in(
        &self,
        tier: symbiont_sandbox::Tier,
        query: &Query,
        batches: Vec<SealedBatch>,
    ) -> std::result::Result<StageOutput, String> {
        let run = || -> Result<StageOutput> {
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
            let mut input = zeroize::Zeroizing::new(serde_json::to_vec(&header)?);
            input.push(b'\n');
            for b in &batches {
                input.extend_from_slice(&(b.bytes.len() as u32).to_le_bytes());
                input.extend_from_slice(&b.bytes);
            }
            let (report, out) = symbiont_sandbox::run_stage(
                tier,
                &self.init,
                &self.worker,
                &[WORKER_ARG.to_owned()],
                &symbiont_sandbox::Limits::default(),
                input.to_vec(),
            )?;
            anyhow::ensure!(
                report.outcome == symbiont_sandbox::Outcome::Exited(0),
                "the stage worker in tier {} ended with {:?}",
                tier as u8,
                report.outcome
            );
            let output: Output =
                serde_json::from_slice(&out).context("the stage worker's answer")?;
            Ok(StageOutput {
                partials: output.partials,
                errors: output.errors,
                failures: output.failures,
                memory_lock: output.memory_lock,
            })
        };
        run().map_err(|e| format!("{e:#}"))
    }
}
