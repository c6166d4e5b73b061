//! The job's dataflow, built from its plan: one loop over the plan's
//! nodes, each becoming one timely operator in every worker, or one stage
//! beside the dataflow (a sandbox, the homomorphic lane's compute stage,
//! the key holder) whose answers re-enter the dataflow at `merge`.
//!
//! Time is the epoch (a `u64` timestamp): a batch job is epoch 0. Packed
//! lists carry their epoch, the stages are started per epoch (at its first
//! batch or list) and finished once everything before `merge` has passed
//! it; worker 0 then hands their partials to `merge` at that epoch.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::{Arc, Mutex};

use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::{Concat, Inspect, OkErr, Probe};
use timely::dataflow::{InputHandleVec, ProbeHandle, StreamVec};

use symbiont_operators::{
    AggregatePartials, Classify, Epoch, Lane, PartialUpdate, PlanNode, PlanStep, Query, Record,
    RouteLanes, Routed, RowError, SourceError, lane_of,
};

use crate::job::{
    AttestedPart, Batch, Collected, HomomorphicStage, JobConfig, JobInput, Persist, SealedFeed,
    SealedStage, SentFeed, first_line, persist_batch,
};

/// The epoch of a batch job: it is one.
pub(crate) const BATCH_EPOCH: u64 = 0;

/// The stages beside the dataflow, one of each per epoch: started at the
/// epoch's first batch (or list), finished once the dataflow has passed the
/// epoch. A stage dropped unfinished (the job failed or was suspended) is
/// abandoned.
pub(crate) struct EpochStages {
    query: Query,
    sealed: Option<Arc<dyn SealedStage>>,
    sealed_feeds: Mutex<BTreeMap<u64, Arc<dyn SealedFeed>>>,
    lists: Option<Arc<dyn HomomorphicStage>>,
    list_feeds: Mutex<BTreeMap<u64, Arc<SentFeed>>>,
}

impl EpochStages {
    pub(crate) fn new(query: &Query, config: &JobConfig) -> EpochStages {
        EpochStages {
            query: query.clone(),
            sealed: config.sealed_stage.clone(),
            sealed_feeds: Mutex::default(),
            // A forbidden lane's lists are never reduced.
            lists: config
                .homomorphic
                .as_ref()
                .filter(|_| !config.forbidden_lanes[Lane::Homomorphic.index()])
                .map(|h| Arc::clone(&h.stage)),
            list_feeds: Mutex::default(),
        }
    }

    /// The sealed stage of `epoch`, started on first use.
    fn sealed_feed(&self, epoch: u64) -> Option<Arc<dyn SealedFeed>> {
        let stage = self.sealed.as_ref()?;
        let mut feeds = self.sealed_feeds.lock().expect("no panic holding it");
        let feed = feeds
            .entry(epoch)
            .or_insert_with(|| Arc::from(stage.start(&self.query, epoch)));
        Some(Arc::clone(feed))
    }

    /// The homomorphic lane's compute stage of `epoch`, started on first
    /// use.
    pub(crate) fn list_feed(&self, epoch: u64) -> Option<Arc<SentFeed>> {
        let stage = self.lists.as_ref()?;
        let mut feeds = self.list_feeds.lock().expect("no panic holding it");
        let feed = feeds
            .entry(epoch)
            .or_insert_with(|| Arc::new(SentFeed::new(stage.start(epoch))));
        Some(Arc::clone(feed))
    }

    /// Ends the stages that live across a stream's epochs (a batch job's
    /// end with their epoch): their sandboxes' reports.
    pub(crate) fn close(&self) -> Result<Vec<serde_json::Value>, crate::JobError> {
        let mut reports = Vec::new();
        if let Some(stage) = &self.sealed {
            reports.extend(stage.close().map_err(crate::JobError::Stage)?);
        }
        if let Some(stage) = &self.lists {
            reports.extend(stage.close().map_err(crate::JobError::Homomorphic)?);
        }
        Ok(reports)
    }

    /// The stages of `epoch`, to finish (`None`: it had none).
    pub(crate) fn take(&self, epoch: u64) -> EpochFeeds {
        (
            self.sealed_feeds
                .lock()
                .expect("no panic holding it")
                .remove(&epoch),
            self.list_feeds
                .lock()
                .expect("no panic holding it")
                .remove(&epoch),
        )
    }
}

/// An epoch's sealed stage and compute stage, if it started them.
pub(crate) type EpochFeeds = (Option<Arc<dyn SealedFeed>>, Option<Arc<SentFeed>>);

/// What every worker shares.
pub(crate) struct Shared {
    pub query: Query,
    pub config: JobConfig,
    /// The plan, and whether each of its nodes runs in this job.
    pub plan: Vec<PlanNode>,
    pub runs: Vec<bool>,
    pub source: Arc<JobInput>,
    pub collected: Mutex<Collected>,
    pub stages: Arc<EpochStages>,
    pub persist: Option<Arc<Mutex<Persist>>>,
    /// Public records cross into a sandboxed aggregation sealed.
    pub seal_public: bool,
}

/// What a plan node became in one worker's dataflow.
enum Built<'s> {
    /// Records to classify, and a stored dataset's items (already
    /// classified).
    Source(StreamVec<'s, u64, Record>, StreamVec<'s, u64, Routed>),
    /// Classified records and sealed batches.
    Routed(StreamVec<'s, u64, Routed>),
    /// Each lane's, in [`Lane::ALL`] order, taken by the lane's node.
    Lanes([Option<StreamVec<'s, u64, Routed>>; 3]),
    /// A lane's partial aggregates, or the merged ones.
    Partials(StreamVec<'s, u64, PartialUpdate<u64>>),
    /// Nothing more in the dataflow: a stage, or an operator whose output
    /// leaves it.
    Left,
}

/// One worker's dataflow while it is built.
pub(crate) struct Wiring<'s> {
    shared: Arc<Shared>,
    query: Rc<Query>,
    /// What each node (by id) became.
    built: Vec<Option<Built<'s>>>,
    /// The stages' answers, which enter at `merge`.
    answers: Option<StreamVec<'s, u64, PartialUpdate<u64>>>,
    errors: Vec<StreamVec<'s, u64, RowError>>,
    /// Everything: the job is done when it is.
    pub probe: ProbeHandle<u64>,
    /// Everything before `merge`: an epoch's stages are finished once it
    /// has passed the epoch.
    pub fed: ProbeHandle<u64>,
    /// This worker's committed values (`commit`).
    pub attested: Rc<RefCell<AttestedPart>>,
    /// What each node that runs became, by stage name (`_meta.built`).
    pub kinds: Vec<(String, &'static str)>,
    /// Set by a node built as a stage beside the dataflow.
    kind: &'static str,
}

/// A node built as a timely operator.
const OPERATOR: &str = "dataflow operator";
/// A node built as a stage beside the dataflow.
const STAGE: &str = "stage";
/// A lane node with nothing to aggregate: its lane is held at route.
const HELD: &str = "held at route";

impl<'s> Wiring<'s> {
    /// Builds the dataflow of `shared`'s plan over the worker's inputs:
    /// `records` to classify, `stored` items, the stages' `answers`. Each
    /// node that runs becomes its operator (or nothing in the dataflow, for
    /// a stage beside it); a node that does not run in this job (`commit`
    /// without `--bundle`, ...) hands its input on.
    pub(crate) fn build(
        shared: Arc<Shared>,
        records: StreamVec<'s, u64, Record>,
        stored: StreamVec<'s, u64, Routed>,
        answers: StreamVec<'s, u64, PartialUpdate<u64>>,
    ) -> Wiring<'s> {
        let nodes = shared.plan.clone();
        let mut w = Wiring {
            query: Rc::new(shared.query.clone()),
            shared,
            built: Vec::new(),
            answers: Some(answers),
            errors: Vec::new(),
            probe: ProbeHandle::new(),
            fed: ProbeHandle::new(),
            attested: Rc::default(),
            kinds: Vec::new(),
            kind: OPERATOR,
        };
        let mut source = Some((records, stored));
        w.built.resize_with(nodes.len(), || None);
        for (node, runs) in nodes.iter().zip(w.shared.runs.clone()) {
            w.kind = OPERATOR;
            let built = if !runs {
                w.input(node)
            } else {
                match node.step {
                    PlanStep::Source => {
                        let (records, stored) = source.take().expect("one source");
                        Built::Source(records, stored)
                    }
                    PlanStep::Commit => w.commit(node),
                    PlanStep::Classify => w.classify(node),
                    PlanStep::Persist => w.persist(node),
                    PlanStep::Route => w.route(node),
                    PlanStep::Encrypt(lane) => w.encrypt(node, lane),
                    PlanStep::Aggregate(lane) => w.aggregate(node, lane),
                    // The key holder answers with its lane's stage, at
                    // merge. A job without the lane's keys aggregated the
                    // lane's sealed records in this process instead: their
                    // partials go on to merge.
                    PlanStep::Decrypt(_) => {
                        w.kind = STAGE;
                        match w.input(node) {
                            Built::Partials(p) => Built::Partials(p),
                            _ => Built::Left,
                        }
                    }
                    PlanStep::Merge => w.merge(node),
                    // The prover runs on the result, after the dataflow.
                    PlanStep::Prove => {
                        w.kind = STAGE;
                        w.input(node)
                    }
                    PlanStep::Sink => w.sink(node),
                }
            };
            if runs {
                w.kinds.push((crate::stage::stage_name(node), w.kind));
            }
            w.built[node.id] = Some(built);
        }
        // Every stream a node made was read by another: an output nobody
        // reads would be records or partials silently left out.
        for (node, built) in nodes.iter().zip(&w.built) {
            let unread = match built {
                Some(Built::Lanes(lanes)) => lanes.iter().any(Option::is_some),
                Some(Built::Left) | None => false,
                Some(_) => node.step != PlanStep::Sink,
            };
            assert!(
                !unread,
                "the output of plan node #{} ({}) is read by no node",
                node.id, node.op
            );
        }
        w.collect_errors();
        w
    }

    /// The output of `node`'s (first) input, taken.
    fn input(&mut self, node: &PlanNode) -> Built<'s> {
        node.inputs
            .first()
            .and_then(|&i| self.built[i].take())
            .unwrap_or(Built::Left)
    }

    /// The stream of `lane` that `node` reads from its input (`route`'s
    /// lanes, or a lane node that handed its stream on).
    fn lane_input(&mut self, node: &PlanNode, lane: Lane) -> Option<StreamVec<'s, u64, Routed>> {
        let from = *node.inputs.first()?;
        match self.built[from].as_mut()? {
            Built::Lanes(lanes) => lanes[lane.index()].take(),
            Built::Routed(_) => match self.built[from].take() {
                Some(Built::Routed(stream)) => Some(stream),
                _ => None,
            },
            _ => None,
        }
    }

    fn records(
        &mut self,
        node: &PlanNode,
    ) -> (StreamVec<'s, u64, Record>, StreamVec<'s, u64, Routed>) {
        match self.input(node) {
            Built::Source(records, stored) => (records, stored),
            _ => unreachable!("the plan reads records from the source"),
        }
    }

    fn routed(&mut self, node: &PlanNode) -> StreamVec<'s, u64, Routed> {
        match self.input(node) {
            Built::Routed(routed) => routed,
            _ => unreachable!("the plan reads classified records from classify"),
        }
    }

    /// `commit`: keeps each record's attested fields, in the order read.
    fn commit(&mut self, node: &PlanNode) -> Built<'s> {
        let (records, stored) = self.records(node);
        let fields = self.shared.config.commit.clone().unwrap_or_default();
        let part = Rc::clone(&self.attested);
        let records = records.inspect(move |r: &Record| part.borrow_mut().take(r, &fields));
        Built::Source(records, stored)
    }

    /// `classify`: each record's lane, sealed or kept for packing as the
    /// lane needs; a stored dataset's sealed batches join as they are.
    fn classify(&mut self, node: &PlanNode) -> Built<'s> {
        let (records, stored) = self.records(node);
        let config = &self.shared.config;
        let (classified, errors): (StreamVec<'s, u64, Routed>, StreamVec<'s, u64, RowError>) =
            records
                .classify(
                    self.query.classifier.clone(),
                    self.query.min_lane,
                    config.keys.sealer.clone(),
                    self.shared.seal_public,
                    config.homomorphic.is_some(),
                    Pipeline,
                )
                .ok_err(|r| r);
        self.errors.push(errors);
        Built::Routed(classified.concat(stored))
    }

    /// `persist`: writes every classified batch as it passes (a forbidden
    /// lane's records are not written); the first error is kept for the
    /// job.
    fn persist(&mut self, node: &PlanNode) -> Built<'s> {
        let routed = self.routed(node);
        let shared = Arc::clone(&self.shared);
        let Some(persist) = shared.persist.clone() else {
            return Built::Routed(routed);
        };
        let forbidden = shared.config.forbidden_lanes;
        Built::Routed(routed.inspect_core(move |event| {
            let Ok((_, batch)) = event else { return };
            let batch: &Vec<Routed> = batch;
            let allowed: Vec<Routed>;
            let batch = if forbidden.iter().any(|f| *f) {
                allowed = batch
                    .iter()
                    .filter(|r| !forbidden[lane_of(r).index()])
                    .cloned()
                    .collect();
                &allowed
            } else {
                batch
            };
            let config = &shared.config;
            let written = persist_batch(
                &persist,
                config.keys.sealer.as_deref(),
                config.persist_tfhe.as_deref(),
                &shared.query.schema,
                batch,
            );
            if let Err(e) = written {
                shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock")
                    .persist_error
                    .get_or_insert(e);
            }
        }))
    }

    /// `route`: the classified stream split by lane. A lane a policy
    /// forbids ends here: its first record is kept, and the job is
    /// suspended at the end of the epoch, before any stage answers. A file
    /// read without a classifier has one lane (every record is raised to
    /// the least lane a policy requires): its stream goes on whole.
    fn route(&mut self, node: &PlanNode) -> Built<'s> {
        let routed = self.routed(node);
        let forbidden = self.shared.config.forbidden_lanes;
        let one_lane = self.query.classifier.is_none()
            && matches!(
                self.shared.source.as_ref(),
                JobInput::Records(_) | JobInput::Stream
            );
        let mut lanes: Vec<Option<StreamVec<'s, u64, Routed>>> = if one_lane {
            let mut lanes = vec![None, None, None];
            lanes[self.query.min_lane.index()] = Some(routed);
            lanes
        } else {
            routed.route_lanes().into_iter().map(Some).collect()
        };
        let mut out: [Option<StreamVec<'s, u64, Routed>>; 3] = [None, None, None];
        for lane in Lane::ALL.into_iter().rev() {
            let Some(stream) = lanes.pop().flatten() else {
                continue;
            };
            if forbidden[lane.index()] {
                self.hold(stream, lane);
            } else {
                out[lane.index()] = Some(stream);
            }
        }
        Built::Lanes(out)
    }

    /// Holds a forbidden lane's records: the first one's line is kept for
    /// the suspension.
    fn hold(&mut self, stream: StreamVec<'s, u64, Routed>, lane: Lane) {
        let shared = Arc::clone(&self.shared);
        stream
            .inspect(move |r: &Routed| {
                let line = first_line(r);
                let mut c = shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock");
                let seen = &mut c.forbidden_seen[lane.index()];
                *seen = Some(seen.map_or(line, |s| s.min(line)));
            })
            .probe_with(&self.fed)
            .probe_with(&self.probe);
    }

    /// `encrypt` (the homomorphic lane's additive path): packs and
    /// encrypts the lane's records, each full list handed to the epoch's
    /// compute stage; its counts and group keys go to merge. Without the
    /// lane's keys (a job run without a keystore), restricted records are
    /// sealed at classify and aggregated like the others.
    fn encrypt(&mut self, node: &PlanNode, lane: Lane) -> Built<'s> {
        let Some(stream) = self.lane_input(node, lane) else {
            return Built::Left;
        };
        match &self.shared.config.homomorphic {
            Some(h) => {
                let packing = Some(Arc::clone(&h.sink));
                self.partials(stream, None, packing)
            }
            None => Built::Routed(stream),
        }
    }

    /// `aggregate`: a lane's partials. In this process, an operator (that
    /// opens sealed batches with the job's opener); in a sandbox, the
    /// epoch's sealed stage, handed each batch as it comes; on the
    /// homomorphic lane, its compute stage (fed by `encrypt`, or reading
    /// the stored TFHE copy: then nothing of the lane may come this way).
    fn aggregate(&mut self, node: &PlanNode, lane: Lane) -> Built<'s> {
        let config = &self.shared.config;
        if lane == Lane::Homomorphic && config.homomorphic.is_some() {
            // The compute stage `encrypt` hands its lists to.
            self.kind = STAGE;
            return Built::Left;
        }
        let Some(stream) = self.lane_input(node, lane) else {
            self.kind = HELD;
            return Built::Left;
        };
        let config = &self.shared.config;
        if lane == Lane::Homomorphic && config.programmable.is_some() {
            return self.withhold(stream, lane);
        }
        // The plan's tier decides: above 0, the lane's sealed batches go to
        // the sandboxed stage (a lane in tier 0 has no sandbox to go to).
        let sealed = lane != Lane::Plaintext || self.shared.seal_public;
        if config.sealed_stage.is_some() && sealed && node.tier > 0 {
            return self.delegate(stream, lane);
        }
        let opener = config.keys.opener.clone();
        self.partials(stream, opener, None)
    }

    /// The aggregate operator over one lane's stream.
    fn partials(
        &mut self,
        stream: StreamVec<'s, u64, Routed>,
        opener: Option<Arc<symbiont_operators::LaneOpener>>,
        packing: Option<Arc<symbiont_operators::PackSink>>,
    ) -> Built<'s> {
        let (updates, errors): (
            StreamVec<'s, u64, PartialUpdate<u64>>,
            StreamVec<'s, u64, RowError>,
        ) = stream
            .aggregate_partials(Rc::clone(&self.query), opener, packing, Pipeline)
            .ok_err(|r| r);
        self.errors.push(errors);
        Built::Partials(updates)
    }

    /// Hands each sealed batch of `lane` to the epoch's sealed stage.
    fn delegate(&mut self, stream: StreamVec<'s, u64, Routed>, lane: Lane) -> Built<'s> {
        self.kind = STAGE;
        let shared = Arc::clone(&self.shared);
        let errors: Rc<RefCell<Vec<RowError>>> = Rc::default();
        stream
            .inspect_core(move |event| {
                let Ok((stamp, batch)) = event else { return };
                let epoch = stamp.least().map_or(BATCH_EPOCH, Epoch::epoch);
                let batch: &Vec<Routed> = batch;
                let feed = shared.stages.sealed_feed(epoch);
                let mut sent = 0;
                for r in batch {
                    match (r, &feed) {
                        (Routed::Sealed(b), Some(feed)) => {
                            feed.send(b.clone());
                            sent += 1;
                        }
                        // Nothing in the clear crosses into a sandbox.
                        (r, _) => errors.borrow_mut().push(RowError {
                            line: first_line(r),
                            field: None,
                            reason: format!(
                                "a record of the {} lane reached its sandboxed stage unsealed",
                                lane.name()
                            ),
                        }),
                    }
                }
                let mut c = shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock");
                c.sealed_lanes[lane.index()] += sent;
                c.errors.append(&mut errors.borrow_mut());
            })
            .probe_with(&self.fed)
            .probe_with(&self.probe);
        Built::Left
    }

    /// On the programmable path the lane's records come from the stored
    /// TFHE copy: whatever this program's classifier made restricted
    /// (records the store keeps public) is counted and fails the job.
    fn withhold(&mut self, stream: StreamVec<'s, u64, Routed>, lane: Lane) -> Built<'s> {
        self.kind = STAGE;
        let shared = Arc::clone(&self.shared);
        stream
            .inspect(move |_: &Routed| {
                shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock")
                    .sealed_lanes[lane.index()] += 1;
            })
            .probe_with(&self.fed)
            .probe_with(&self.probe);
        Built::Left
    }

    /// `merge`: the lanes' partials and the stages' answers, consolidated
    /// per key and epoch across the workers.
    fn merge(&mut self, node: &PlanNode) -> Built<'s> {
        let mut merged = self.answers.take().expect("one merge");
        for &i in &node.inputs {
            if let Some(Built::Partials(p)) = self.built[i].take() {
                merged = merged.concat(p.probe_with(&self.fed));
            }
        }
        Built::Partials(merged.as_collection().consolidate().inner)
    }

    /// `sink`: the merged partials, kept for the result.
    fn sink(&mut self, node: &PlanNode) -> Built<'s> {
        let Built::Partials(merged) = self.input(node) else {
            unreachable!("the plan's sink reads the merged partials");
        };
        let shared = Arc::clone(&self.shared);
        merged
            .inspect(move |(key, _, partial): &PartialUpdate<u64>| {
                shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock")
                    .partials
                    .push((key.clone(), partial.clone()));
            })
            .probe_with(&self.probe);
        Built::Left
    }

    /// Every operator's per-record errors, kept for the job.
    fn collect_errors(&mut self) {
        let shared = Arc::clone(&self.shared);
        let mut errors = std::mem::take(&mut self.errors).into_iter();
        let Some(first) = errors.next() else { return };
        errors
            .fold(first, |all, e| all.concat(e))
            .inspect(move |e: &RowError| {
                shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock")
                    .errors
                    .push(e.clone());
            })
            .probe_with(&self.fed)
            .probe_with(&self.probe);
    }
}

/// One worker's dataflow of the plan: its inputs (records to classify, a
/// stored dataset's items, the stages' answers) and its probes.
pub(crate) struct Dataflow {
    pub input: InputHandleVec<u64, Record>,
    pub stored: InputHandleVec<u64, Routed>,
    pub answers: InputHandleVec<u64, PartialUpdate<u64>>,
    /// Passes an epoch once the result (`sink`) has it.
    pub probe: ProbeHandle<u64>,
    /// Passes an epoch once everything before `merge` has it.
    pub fed: ProbeHandle<u64>,
    /// The values `commit` kept.
    pub attested: Rc<RefCell<AttestedPart>>,
}

impl Dataflow {
    /// Builds `shared`'s plan in `worker`.
    pub(crate) fn build(worker: &mut timely::worker::Worker, shared: &Arc<Shared>) -> Dataflow {
        use timely::dataflow::operators::Input;
        let mut input = InputHandleVec::new();
        let mut stored = InputHandleVec::new();
        let mut answers = InputHandleVec::new();
        let (probe, fed, attested) = worker.dataflow::<u64, _, _>(|scope| {
            let w = Wiring::build(
                Arc::clone(shared),
                scope.input_from(&mut input),
                scope.input_from(&mut stored),
                scope.input_from(&mut answers),
            );
            let mut c = shared
                .collected
                .lock()
                .expect("no worker panicked holding the lock");
            if c.built.is_empty() {
                c.built = w.kinds;
            }
            (w.probe, w.fed, w.attested)
        });
        Dataflow {
            input,
            stored,
            answers,
            probe,
            fed,
            attested,
        }
    }
}

/// How long a worker parks while it waits for its dataflow.
pub(crate) const PARK: Option<std::time::Duration> = Some(std::time::Duration::from_millis(1));

/// One worker of a batch job: builds the plan's dataflow, reads its part
/// of the input as epoch 0, and once everything before `merge` has passed
/// the epoch, reports what it read; worker 0 then finishes the epoch's
/// stages (after the checks that may end the job first) and hands their
/// answers to `merge`.
pub(crate) fn run_worker(
    worker: &mut timely::worker::Worker,
    shared: &Arc<Shared>,
    read: impl FnOnce(&mut dyn FnMut(Batch<'_>)) -> (Result<u64, SourceError>, Vec<RowError>),
) {
    let Dataflow {
        mut input,
        mut stored,
        mut answers,
        probe,
        fed,
        attested,
    } = Dataflow::build(worker, shared);
    let (result, source_errors) = read(&mut |batch| {
        match batch {
            Batch::Records(records) => input.send_batch(records),
            Batch::Stored(items) => stored.send_batch(items),
        }
        worker.step();
    });
    input.close();
    stored.close();
    worker.step_or_park_while(PARK, || fed.less_equal(&BATCH_EPOCH));
    {
        let mut c = shared
            .collected
            .lock()
            .expect("no worker panicked holding the lock");
        c.errors.extend(source_errors);
        if shared.config.commit.is_some() {
            c.attested.push((worker.index(), attested.take()));
        }
        match result {
            Ok(rows) => c.rows += rows,
            Err(e) => {
                c.source_error.get_or_insert(e);
            }
        }
        c.reported += 1;
    }
    if worker.index() == 0 {
        let peers = worker.peers();
        worker.step_or_park_while(PARK, || {
            shared
                .collected
                .lock()
                .expect("no worker panicked holding the lock")
                .reported
                < peers
        });
        match crate::job::close_epoch(shared, BATCH_EPOCH) {
            Ok(mut partials) => answers.send_batch(&mut partials),
            Err(e) => {
                shared
                    .collected
                    .lock()
                    .expect("no worker panicked holding the lock")
                    .ended
                    .get_or_insert(e);
            }
        }
    }
    answers.close();
    worker.step_or_park_while(PARK, || !probe.done());
}
