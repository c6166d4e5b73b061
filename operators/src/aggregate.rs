//! The aggregate operator: per lane, the partial aggregates of each batch
//! of records, as differential updates whose difference is the partial.
//! Consolidating them (a sum in the [`Partial`] semigroup) merges batches,
//! workers and, once the lane is dropped from the key, lanes.

use std::collections::HashMap;
use std::rc::Rc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::generic::operator::Operator;
use timely::order::TotalOrder;
use timely::progress::Timestamp;

use crate::classify::Routed;
use crate::expr::Element;
use crate::partial::Partial;
use crate::query::{AggKind, Lane, Query};
use crate::record::RowError;
use crate::value::Value;

/// The aggregate index of the per-lane record counts (`_meta.lanes`).
pub const LANE_COUNT: u32 = u32::MAX;

/// The aggregate index that records the group keys seen.
pub const GROUP_KEYS: u32 = u32::MAX - 1;

/// What a partial is keyed by: aggregate index, lane, group key.
pub type AggKey = (u32, Lane, Value);

/// A differential update carrying a partial aggregate.
pub type PartialUpdate<T> = (AggKey, T, Partial);

/// Extension trait: partial aggregates of a classified stream.
pub trait AggregatePartials<'scope, T: Timestamp + TotalOrder> {
    /// Computes, for each batch, the partials of every aggregate of
    /// `query` by lane and group, plus the record count of each lane. An
    /// expression that fails on a record becomes an error naming its line.
    fn aggregate_partials<P>(
        self,
        query: Rc<Query>,
        pact: P,
    ) -> StreamVec<'scope, T, Result<PartialUpdate<T>, RowError>>
    where
        P: ParallelizationContract<T, Vec<Routed>>;
}

impl<'scope, T: Timestamp + TotalOrder> AggregatePartials<'scope, T>
    for StreamVec<'scope, T, Routed>
{
    fn aggregate_partials<P>(
        self,
        query: Rc<Query>,
        pact: P,
    ) -> StreamVec<'scope, T, Result<PartialUpdate<T>, RowError>>
    where
        P: ParallelizationContract<T, Vec<Routed>>,
    {
        self.unary(pact, "AggregatePartials", move |_, _| {
            let mut partials: HashMap<AggKey, Partial> = HashMap::new();
            let mut errors: Vec<RowError> = Vec::new();
            move |input, output| {
                input.for_each(|time, data| {
                    for (lane, record) in data.iter() {
                        if let Err(e) = accumulate(&query, *lane, &record.values, &mut partials) {
                            errors.push(RowError {
                                line: record.line,
                                field: None,
                                reason: e.to_string(),
                            });
                        }
                    }
                    let t = time.least().expect("a message has a timestamp").clone();
                    let mut session = output.session(&time);
                    session.give_iterator(
                        partials
                            .drain()
                            .map(|(key, partial)| Ok((key, t.clone(), partial))),
                    );
                    session.give_iterator(errors.drain(..).map(Err));
                });
            }
        })
    }
}

/// Adds one record's contributions to `partials`.
fn accumulate(
    query: &Query,
    lane: Lane,
    record: &[Value],
    partials: &mut HashMap<AggKey, Partial>,
) -> Result<(), crate::expr::EvalError> {
    partials
        .entry((LANE_COUNT, lane, Value::Null))
        .or_default()
        .add(None, false);
    let (element, key) = match &query.grouping {
        None => (Element::Record(record), Value::Null),
        Some(grouping) => {
            let Some(element) = grouping.pipeline.run(record)? else {
                return Ok(());
            };
            let key = {
                let env = env_of(&element);
                grouping.key.eval(&env)?.into_owned()
            };
            partials
                .entry((GROUP_KEYS, lane, key.clone()))
                .or_default()
                .add(None, false);
            (element, key)
        }
    };
    // Lowering only allows filters before `group_by`, so the element is
    // still the record.
    let Element::Record(record) = element else {
        return Ok(());
    };
    for (i, spec) in query.aggregates.iter().enumerate() {
        let Some(out) = spec.pipeline.run(record)? else {
            continue;
        };
        let extremes = matches!(spec.kind, AggKind::Min | AggKind::Max);
        let value = match &out {
            Element::Record(_) => None,
            Element::Value(v) => Some(v.as_ref()),
        };
        let k = (i as u32, lane, key.clone());
        match partials.get_mut(&k) {
            Some(p) => p.add(value, extremes),
            None => {
                partials.insert(k, Partial::of(value, extremes));
            }
        }
    }
    Ok(())
}

fn env_of<'a>(element: &'a Element<'a>) -> crate::expr::Env<'a> {
    match element {
        Element::Record(r) => crate::expr::Env::record(r),
        Element::Value(v) => crate::expr::Env {
            record: &[],
            current: Some(v.as_ref()),
            locals: &[],
        },
    }
}
