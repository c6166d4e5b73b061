//! The classify operator: evaluates the program's `@classifier` agent on
//! every record and tags it with its lane. The records of the encrypted
//! lanes (and of the public one, when its aggregation runs in a sandbox)
//! leave it sealed: one AES-256-GCM batch per lane and input batch, their
//! plaintext wiped — except restricted records bound for the homomorphic
//! lane's additive path, which the same process packs and encrypts.

use std::rc::Rc;
use std::sync::Arc;

use symbiont_crypto::Sealer;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::{ParallelizationContract, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;

use crate::query::{Classifier, Lane};
use crate::record::{Record, RowError};
use crate::sealed::{Plain, SealedBatch, seal_records};

/// A record with its lane, or a sealed batch of confidential records.
#[derive(Clone, Debug)]
pub enum Routed {
    /// A record in the clear, with its lane.
    Clear(Lane, Record),
    /// Records of an encrypted lane, sealed.
    Sealed(SealedBatch),
}

/// Extension trait: classify a stream of records.
pub trait Classify<'scope, T: Timestamp> {
    /// Tags each record with the lane `classifier` gives it (every record
    /// is public without a classifier), raised to `min_lane` when it is
    /// below (a policy requires that encryption), and seals the confidential ones
    /// with `sealer` — and the public ones too when `seal_public` (their
    /// aggregation runs in a sandbox, and they cross into it sealed).
    /// Restricted records are sealed too, unless `pack_restricted`: then
    /// they stay in this process, for the homomorphic lane's packer. A
    /// record on which the classifier fails becomes an error naming its
    /// line, and so does a record to seal when there is no sealer or
    /// sealing fails: nothing falls back to plaintext.
    fn classify<P>(
        self,
        classifier: Option<Classifier>,
        min_lane: Lane,
        sealer: Option<Arc<Sealer>>,
        seal_public: bool,
        pack_restricted: bool,
        pact: P,
    ) -> StreamVec<'scope, T, Result<Routed, RowError>>
    where
        P: ParallelizationContract<T, Vec<Record>>;
}

impl<'scope, T: Timestamp> Classify<'scope, T> for StreamVec<'scope, T, Record> {
    fn classify<P>(
        self,
        classifier: Option<Classifier>,
        min_lane: Lane,
        sealer: Option<Arc<Sealer>>,
        seal_public: bool,
        pack_restricted: bool,
        pact: P,
    ) -> StreamVec<'scope, T, Result<Routed, RowError>>
    where
        P: ParallelizationContract<T, Vec<Record>>,
    {
        let classifier = Rc::new(classifier);
        self.unary(pact, "Classify", move |_, _| {
            move |input, output| {
                input.for_each(|time, data| {
                    let mut session = output.session(&time);
                    let mut sealed_lanes = [Plain::default(), Plain::default(), Plain::default()];
                    for record in data.drain(..) {
                        let lane = match classifier.as_ref() {
                            None => Ok(Lane::Plaintext),
                            Some(c) => c.classify(&record.values).map_err(|e| RowError {
                                line: record.line,
                                field: None,
                                reason: format!("classifier `{}` failed: {e}", c.name),
                            }),
                        }
                        .map(|lane| lane.max(min_lane));
                        match lane {
                            Ok(Lane::Plaintext) if !seal_public => {
                                session.give(Ok(Routed::Clear(Lane::Plaintext, record)))
                            }
                            Ok(Lane::Homomorphic) if pack_restricted => {
                                session.give(Ok(Routed::Clear(Lane::Homomorphic, record)))
                            }
                            Ok(lane) => sealed_lanes[lane.index()].0.push(record),
                            Err(e) => session.give(Err(e)),
                        }
                    }
                    for (lane, records) in Lane::ALL.into_iter().zip(sealed_lanes) {
                        if records.0.is_empty() {
                            continue;
                        }
                        let line = records.0[0].line;
                        let sealed = match sealer.as_deref() {
                            Some(sealer) => {
                                seal_records(sealer, lane, records).map_err(|e| e.to_string())
                            }
                            None => Err("the job has no keystore to seal it with".to_owned()),
                        };
                        session.give(sealed.map(Routed::Sealed).map_err(|reason| RowError {
                            line,
                            field: None,
                            reason: format!("a {} record cannot be sealed: {reason}", lane.name()),
                        }));
                    }
                });
            }
        })
    }
}

/// Extension trait: a classified stream split by lane.
pub trait RouteLanes<'scope, T: Timestamp> {
    /// One stream per lane, in [`Lane::ALL`] order. A batch whose items
    /// all have one lane goes on whole (no item is moved), so a stream of
    /// one class costs nothing to route.
    fn route_lanes(self) -> [StreamVec<'scope, T, Routed>; 3];
}

impl<'scope, T: Timestamp> RouteLanes<'scope, T> for StreamVec<'scope, T, Routed> {
    fn route_lanes(self) -> [StreamVec<'scope, T, Routed>; 3] {
        let mut builder = OperatorBuilder::new("Route".to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        builder.set_notify_for(0, timely::progress::operate::FrontierInterest::Never);
        let (mut plain, plain_stream) = builder.new_output::<Vec<Routed>>();
        let (mut aes, aes_stream) = builder.new_output::<Vec<Routed>>();
        let (mut fhe, fhe_stream) = builder.new_output::<Vec<Routed>>();
        builder.build(move |_| {
            move |_frontiers| {
                let mut outputs = [plain.activate(), aes.activate(), fhe.activate()];
                input.for_each_stamp(|stamp, data| {
                    for batch in data {
                        let Some(first) = batch.first().map(lane_of) else {
                            continue;
                        };
                        if batch.iter().all(|r| lane_of(r) == first) {
                            outputs[first.index()].give(&stamp, batch);
                            continue;
                        }
                        let mut lanes: [Vec<Routed>; 3] = Default::default();
                        for r in batch.drain(..) {
                            lanes[lane_of(&r).index()].push(r);
                        }
                        for (out, mut lane) in outputs.iter_mut().zip(lanes) {
                            if !lane.is_empty() {
                                out.give(&stamp, &mut lane);
                            }
                        }
                    }
                });
            }
        });
        [plain_stream, aes_stream, fhe_stream]
    }
}

/// The lane a routed record or batch is in.
pub fn lane_of(r: &Routed) -> Lane {
    match r {
        Routed::Clear(lane, _) => *lane,
        Routed::Sealed(b) => b.lane,
    }
}
