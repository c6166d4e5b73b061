//! The aggregate operator: per lane and group, the partial aggregates of
//! everything a worker sees at one time, emitted once that time is
//! complete as differential updates whose difference is the partial.
//! Consolidating them (a sum in the [`Partial`] semigroup) merges workers
//! and, once the lane is dropped from the key, lanes.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use rustc_hash::FxHashMap;
use symbiont_crypto::LockedBuf;
use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::classify::Routed;
use crate::expr::{Element, Env, EvalError};
use crate::homomorphic::{PackSink, Packer};
use crate::partial::Partial;
use crate::query::{AggKind, Lane, Query};
use crate::record::RowError;
use crate::sealed::LaneOpener;
use crate::value::Value;

/// The aggregate index of the per-lane record counts (`_meta.lanes`).
pub const LANE_COUNT: u32 = u32::MAX;

/// The aggregate index that records the group keys seen.
pub const GROUP_KEYS: u32 = u32::MAX - 1;

/// What a partial is keyed by: aggregate index, lane, group key.
pub type AggKey = (u32, Lane, Value);

/// A differential update carrying a partial aggregate.
pub type PartialUpdate<T> = (AggKey, T, Partial);

/// A timestamp's epoch: what seals, packed lists and the stages' answers
/// are kept apart by. A batch job is one epoch.
pub trait Epoch: Timestamp + TotalOrder {
    /// The epoch of this time.
    fn epoch(&self) -> u64;
}

impl Epoch for u64 {
    fn epoch(&self) -> u64 {
        *self
    }
}

/// Extension trait: partial aggregates of a classified stream.
pub trait AggregatePartials<'scope, T: Epoch> {
    /// Computes the partials of every aggregate of `query` by lane and
    /// group, plus the record count of each lane, and emits them when
    /// their time is complete. An expression that fails on a record
    /// becomes an error naming its line. Sealed batches are opened with
    /// `opener` into one locked, zeroizing buffer per worker; their records
    /// are wiped as soon as they are added. A batch that does not open is
    /// an error naming its first record. Restricted records in the clear
    /// are packed and encrypted under `packing`'s public key (the additive
    /// path of the homomorphic lane), and their lists handed to it when
    /// their time is complete.
    fn aggregate_partials<P>(
        self,
        query: Rc<Query>,
        opener: Option<Arc<LaneOpener>>,
        packing: Option<Arc<PackSink>>,
        pact: P,
    ) -> StreamVec<'scope, T, Result<PartialUpdate<T>, RowError>>
    where
        P: ParallelizationContract<T, Vec<Routed>>;
}

impl<'scope, T: Epoch> AggregatePartials<'scope, T> for StreamVec<'scope, T, Routed> {
    fn aggregate_partials<P>(
        self,
        query: Rc<Query>,
        opener: Option<Arc<LaneOpener>>,
        packing: Option<Arc<PackSink>>,
        pact: P,
    ) -> StreamVec<'scope, T, Result<PartialUpdate<T>, RowError>>
    where
        P: ParallelizationContract<T, Vec<Routed>>,
    {
        self.unary_frontier(pact, "AggregatePartials", move |_, _| {
            let mut pending: BTreeMap<T, (Capability<T>, Accumulator)> = BTreeMap::new();
            let mut buf = LockedBuf::new();
            let width = query.schema.fields.len();
            move |(input, frontier), output| {
                input.for_each(|time, data| {
                    let t = time.least().expect("a message has a timestamp").clone();
                    let (_, acc) = pending
                        .entry(t.clone())
                        .or_insert_with(|| (time.delayed(&t, 0), Accumulator::new(&query, t.epoch())));
                    for routed in data.iter() {
                        match routed {
                            Routed::Clear(Lane::Homomorphic, record) => {
                                acc.pack_record(&query, packing.as_deref(), record)
                            }
                            Routed::Clear(lane, record) => acc.add_record(&query, *lane, record),
                            Routed::Sealed(batch) => {
                                let opened = match opener.as_deref() {
                                    Some(o) => o.open(batch, width, &mut buf),
                                    None => Err(RowError {
                                        line: 0,
                                        field: None,
                                        reason: "a sealed batch arrived and the job has no keys to open it".into(),
                                    }),
                                };
                                match opened {
                                    Ok(plain) => {
                                        for record in &plain.0 {
                                            acc.add_record(&query, batch.lane, record);
                                        }
                                    }
                                    Err(e) => acc.errors.push(e),
                                }
                            }
                        }
                    }
                });
                while let Some(entry) = pending.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (t, (cap, mut acc)) = entry.remove_entry();
                    if let (Some(packer), Some(sink)) = (acc.packer.take(), packing.as_deref()) {
                        match packer.finish() {
                            Ok(packed) => {
                                sink.put(acc.epoch, packed.lists);
                                acc.restricted_groups = packed.groups;
                            }
                            Err(e) => acc.errors.push(RowError {
                                line: 0,
                                field: None,
                                reason: format!("the restricted lane's encryption failed: {e}"),
                            }),
                        }
                    }
                    let mut session = output.session(&cap);
                    session.give_iterator(acc.drain(&query, t));
                }
            }
        })
    }
}

/// The partials of one worker at one time.
struct Accumulator {
    /// Group key to slot.
    slots: FxHashMap<Value, usize>,
    /// Slot to group key.
    keys: Vec<Value>,
    /// Per lane: `aggregates + 1` partials per slot (the last counts the
    /// group's records).
    partials: [Vec<Partial>; 3],
    /// Records per lane.
    lanes: [i64; 3],
    errors: Vec<RowError>,
    width: usize,
    extremes: Vec<bool>,
    /// Restricted records in the clear, packed for the additive path.
    packer: Option<Packer>,
    /// The group keys the packer saw.
    restricted_groups: std::collections::BTreeSet<Value>,
    /// The epoch of its time, which its packed lists carry.
    epoch: u64,
}

impl Accumulator {
    fn new(query: &Query, epoch: u64) -> Accumulator {
        Accumulator {
            epoch,
            slots: FxHashMap::default(),
            keys: Vec::new(),
            partials: Default::default(),
            lanes: [0; 3],
            errors: Vec::new(),
            packer: None,
            restricted_groups: Default::default(),
            width: query.aggregates.len() + 1,
            extremes: query
                .aggregates
                .iter()
                .map(|a| matches!(a.kind, AggKind::Min | AggKind::Max))
                .collect(),
        }
    }

    /// Adds one record's contributions, or the error it causes.
    fn add_record(&mut self, query: &Query, lane: Lane, record: &crate::record::Record) {
        if let Err(e) = self.add(query, lane, &record.values) {
            self.errors.push(RowError {
                line: record.line,
                field: None,
                reason: e.to_string(),
            });
        }
    }

    /// Packs one restricted record for the additive path, or records the
    /// error it causes (nothing of it is kept then).
    fn pack_record(
        &mut self,
        query: &Query,
        sink: Option<&PackSink>,
        record: &crate::record::Record,
    ) {
        let Some(sink) = sink else {
            self.errors.push(RowError {
                line: record.line,
                field: None,
                reason: "a restricted record, and the job has no TFHE public key to encrypt it (run `symbi keys init`)".into(),
            });
            return;
        };
        let packer = self.packer.get_or_insert_with(|| sink.packer());
        match packer.add(query, &record.values) {
            Ok(()) => {
                self.lanes[Lane::Homomorphic.index()] += 1;
                // A full list goes on at once (to the compute stage, when
                // the job streams to it), not at the end of the epoch.
                let full = packer.drain();
                if !full.is_empty() {
                    sink.put(self.epoch, full);
                }
            }
            Err(e) => self.errors.push(RowError {
                line: record.line,
                field: None,
                reason: e.to_string(),
            }),
        }
    }

    /// Adds one record's contributions.
    fn add(&mut self, query: &Query, lane: Lane, record: &[Value]) -> Result<(), EvalError> {
        self.lanes[lane.index()] += 1;
        let slot = match &query.grouping {
            None => self.slot(&Value::Null),
            Some(grouping) => {
                // Lowering only allows filters before `group_by`, so the
                // element is still the record.
                let Some(Element::Record(record)) = grouping.pipeline.run(record)? else {
                    return Ok(());
                };
                let key = grouping.key.eval(&Env::record(record))?;
                self.slot(&key)
            }
        };
        let base = slot * self.width;
        let partials = &mut self.partials[lane.index()];
        if partials.len() < base + self.width {
            partials.resize(base + self.width, Partial::default());
        }
        partials[base + self.width - 1].add(None, false);
        for (i, spec) in query.aggregates.iter().enumerate() {
            let Some(out) = spec.pipeline.run(record)? else {
                continue;
            };
            let value = match &out {
                Element::Record(_) => None,
                Element::Value(v) => Some(v.as_ref()),
            };
            partials[base + i].add(value, self.extremes[i]);
        }
        Ok(())
    }

    fn slot(&mut self, key: &Value) -> usize {
        if let Some(slot) = self.slots.get(key) {
            return *slot;
        }
        let slot = self.keys.len();
        self.slots.insert(key.clone(), slot);
        self.keys.push(key.clone());
        slot
    }

    /// The accumulated partials and errors, as updates at time `t`.
    fn drain<T: Clone>(
        self,
        query: &Query,
        t: T,
    ) -> impl Iterator<Item = Result<PartialUpdate<T>, RowError>> {
        let grouped = query.grouping.is_some();
        let mut out = Vec::new();
        for key in &self.restricted_groups {
            let seen = Partial {
                count: 1,
                ..Partial::default()
            };
            out.push(Ok((
                (GROUP_KEYS, Lane::Homomorphic, key.clone()),
                t.clone(),
                seen,
            )));
        }
        for lane in Lane::ALL {
            let count = self.lanes[lane.index()];
            if count > 0 {
                let p = Partial {
                    count,
                    ..Partial::default()
                };
                out.push(Ok(((LANE_COUNT, lane, Value::Null), t.clone(), p)));
            }
            let partials = &self.partials[lane.index()];
            for (slot, chunk) in partials.chunks(self.width).enumerate() {
                let key = &self.keys[slot];
                let (aggregates, records) = chunk.split_at(self.width - 1);
                if grouped && records[0].count > 0 {
                    out.push(Ok((
                        (GROUP_KEYS, lane, key.clone()),
                        t.clone(),
                        records[0].clone(),
                    )));
                }
                for (i, p) in aggregates.iter().enumerate() {
                    if p.count > 0 {
                        out.push(Ok(((i as u32, lane, key.clone()), t.clone(), p.clone())));
                    }
                }
            }
        }
        out.extend(self.errors.into_iter().map(Err));
        out.into_iter()
    }
}

/// The partial aggregates of sealed batches, opened with `opener`, outside
/// any dataflow: what a sandboxed stage worker computes. Returns the
/// partials (lane counts and group keys included, as the operator emits
/// them) and the per-record errors; batches that did not open are in
/// [`LaneOpener::failures`].
pub fn aggregate_sealed(
    query: &Query,
    opener: &LaneOpener,
    batches: impl IntoIterator<Item = crate::sealed::SealedBatch>,
) -> (Vec<(AggKey, Partial)>, Vec<RowError>) {
    // Sealed batches are opened and added, never packed: the epoch, which
    // only packed lists carry, is the stage's own.
    let mut acc = Accumulator::new(query, 0);
    let mut buf = LockedBuf::new();
    let width = query.schema.fields.len();
    for batch in batches {
        match opener.open(&batch, width, &mut buf) {
            Ok(plain) => {
                for record in &plain.0 {
                    acc.add_record(query, batch.lane, record);
                }
            }
            Err(e) => acc.errors.push(e),
        }
    }
    let mut partials = Vec::new();
    let mut errors = Vec::new();
    for item in acc.drain(query, ()) {
        match item {
            Ok((key, (), partial)) => partials.push((key, partial)),
            Err(e) => errors.push(e),
        }
    }
    (partials, errors)
}
