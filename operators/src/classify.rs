//! The classify operator: evaluates the program's `@classifier` agent on
//! every record and tags it with its lane.

use std::rc::Rc;

use timely::dataflow::StreamVec;
use timely::dataflow::channels::pact::ParallelizationContract;
use timely::dataflow::operators::generic::operator::Operator;
use timely::progress::Timestamp;

use crate::query::{Classifier, Lane};
use crate::record::{Record, RowError};

/// A record with its lane.
pub type Routed = (Lane, Record);

/// Extension trait: classify a stream of records.
pub trait Classify<'scope, T: Timestamp> {
    /// Tags each record with the lane `classifier` gives it (every record
    /// is public without a classifier). A record on which the classifier
    /// fails becomes an error naming its line.
    fn classify<P>(
        self,
        classifier: Option<Classifier>,
        pact: P,
    ) -> StreamVec<'scope, T, Result<Routed, RowError>>
    where
        P: ParallelizationContract<T, Vec<Record>>;
}

impl<'scope, T: Timestamp> Classify<'scope, T> for StreamVec<'scope, T, Record> {
    fn classify<P>(
        self,
        classifier: Option<Classifier>,
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
                    for record in data.drain(..) {
                        let lane = match classifier.as_ref() {
                            None => Ok(Lane::Plaintext),
                            Some(c) => c.classify(&record.values).map_err(|e| RowError {
                                line: record.line,
                                field: None,
                                reason: format!("classifier `{}` failed: {e}", c.name),
                            }),
                        };
                        session.give(lane.map(|lane| (lane, record)));
                    }
                });
            }
        })
    }
}
