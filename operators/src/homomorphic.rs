//! The homomorphic lane's additive path, as operators see it.
//!
//! - [`Packer`] (ingestion, the data owner's boundary, holds the public
//!   key only): evaluates each restricted record's filters, maps and group
//!   key in the clear — they are known at ingestion, and the owner holds
//!   the record anyway — and writes its contribution to every column into
//!   one slot of the current list: 1 or 0 to a count, the value or 0 to a
//!   sum. Full lists are encrypted ([`PackedList`]); the record's values
//!   are never kept.
//! - [`reduce`] (compute, holds no key): adds the lists of each column and
//!   reduces it to one ciphertext per residue ([`Reduced`]).
//! - [`decrypted_partials`] (the key holder's side, after decryption):
//!   turns each column's total into the [`Partial`] the merge expects.
//!
//! A column is an aggregate, a group key and a [`Quantity`]. Every record
//! writes a slot of every column that exists, so the compute stage cannot
//! tell which group or filter a record fell in; it does learn the group
//! keys of restricted records (they label columns; the result publishes
//! them anyway) and in which list a key was first seen (`docs/FHE.md`).

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use symbiont_crypto::additive::{
    self, AdditiveError, Column, Encryptor, List, PublicKey, Reduced, SLOTS, Sent, Width,
};
use zeroize::Zeroize;

use crate::expr::{Element, Env, EvalError};
use crate::partial::{Partial, TotalF64};
use crate::query::{AggKind, Query};
use crate::value::Value;

/// Floats enter the additive path as integers of this many units per 1
/// (fixed point, 10^-4): totals are exact to that scale.
pub const FLOAT_SCALE: f64 = 1e4;

/// What a column totals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Quantity {
    /// Elements (for `count` and `avg`).
    Count,
    /// Integer elements.
    IntSum,
    /// Float elements, in units of 1/[`FLOAT_SCALE`].
    FloatSum,
}

impl Quantity {
    fn width(self) -> Width {
        match self {
            Quantity::Count => Width::Count,
            Quantity::IntSum | Quantity::FloatSum => Width::Sum,
        }
    }
}

/// A column: aggregate index, group key, quantity.
pub type ColumnKey = (u32, Value, Quantity);

/// One encrypted list of a column: one [`List`] per residue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PackedList {
    /// The column.
    pub column: ColumnKey,
    /// Its residues' lists.
    pub lists: Vec<List>,
}

/// Why a restricted record cannot be packed (reported against its line).
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// An expression failed on the record.
    #[error("{0}")]
    Eval(#[from] EvalError),
    /// The additive path computes count, sum and avg only.
    #[error(
        "`{0}` over restricted records: the homomorphic lane's additive path computes count, sum and avg; min and max run on the programmable path only"
    )]
    Unsupported(String),
    /// A value the additive path cannot hold.
    #[error("`{label}`: {reason}")]
    Value {
        /// The aggregate.
        label: String,
        /// Why.
        reason: String,
    },
    /// Encryption failed.
    #[error("{0}")]
    Additive(#[from] AdditiveError),
}

/// Packs one worker's restricted records into encrypted lists.
#[derive(Debug)]
pub struct Packer {
    encryptor: Encryptor,
    /// Column key to its index in `values`.
    index: FxHashMap<ColumnKey, usize>,
    keys: Vec<ColumnKey>,
    /// The current list of every column, [`SLOTS`] values each.
    values: Vec<Vec<i64>>,
    /// Records in the current list.
    slot: usize,
    out: Vec<PackedList>,
    records: u64,
    groups: BTreeSet<Value>,
    /// One record's contributions, reused.
    scratch: Vec<(ColumnKey, i64)>,
}

impl Drop for Packer {
    fn drop(&mut self) {
        for v in &mut self.values {
            v.zeroize();
        }
    }
}

/// What a worker's packer produced.
#[derive(Debug, Default)]
pub struct Packed {
    /// The encrypted lists.
    pub lists: Vec<PackedList>,
    /// Restricted records packed (`_meta.lanes.homomorphic`).
    pub records: u64,
    /// Their group keys.
    pub groups: BTreeSet<Value>,
}

impl Packer {
    /// A packer encrypting under `key`.
    pub fn new(key: PublicKey) -> Packer {
        Packer {
            encryptor: Encryptor::new(key),
            index: FxHashMap::default(),
            keys: Vec::new(),
            values: Vec::new(),
            slot: 0,
            out: Vec::new(),
            records: 0,
            groups: BTreeSet::new(),
            scratch: Vec::new(),
        }
    }

    /// Adds one restricted record. On error nothing of it is added.
    pub fn add(&mut self, query: &Query, record: &[Value]) -> Result<(), PackError> {
        self.scratch.clear();
        let group = match &query.grouping {
            None => Some(Value::Null),
            Some(grouping) => match grouping.pipeline.run(record)? {
                Some(Element::Record(r)) => Some(grouping.key.eval(&Env::record(r))?.into_owned()),
                _ => None,
            },
        };
        if let Some(group) = &group {
            for (i, spec) in query.aggregates.iter().enumerate() {
                let Some(out) = spec.pipeline.run(record)? else {
                    continue;
                };
                let key = |q| (i as u32, group.clone(), q);
                let value = match &out {
                    Element::Record(_) => None,
                    Element::Value(v) => Some(v.as_ref()),
                };
                let (count, sum) = match spec.kind {
                    AggKind::Count => (true, false),
                    AggKind::Sum => (false, true),
                    AggKind::Avg => (true, true),
                    AggKind::Min | AggKind::Max => {
                        return Err(PackError::Unsupported(spec.label.clone()));
                    }
                };
                if count {
                    self.scratch.push((key(Quantity::Count), 1));
                }
                if sum {
                    match value {
                        Some(Value::Int(v)) => {
                            if v.unsigned_abs() >= 1 << additive::MAX_VALUE_BITS {
                                return Err(PackError::Value {
                                    label: spec.label.clone(),
                                    reason: format!(
                                        "an integer beyond the homomorphic lane's range (magnitude below 2^{})",
                                        additive::MAX_VALUE_BITS
                                    ),
                                });
                            }
                            self.scratch.push((key(Quantity::IntSum), *v));
                        }
                        Some(Value::Float(f)) => {
                            let fixed = (f * FLOAT_SCALE).round();
                            if !fixed.is_finite()
                                || fixed.abs() >= (1u64 << additive::MAX_VALUE_BITS) as f64
                            {
                                return Err(PackError::Value {
                                    label: spec.label.clone(),
                                    reason: format!(
                                        "a float beyond the homomorphic lane's range (magnitude below 2^{} / {FLOAT_SCALE})",
                                        additive::MAX_VALUE_BITS
                                    ),
                                });
                            }
                            self.scratch.push((key(Quantity::FloatSum), fixed as i64));
                        }
                        // Partial sums skip non-numeric elements too.
                        _ => {}
                    }
                }
            }
        }
        let scratch = std::mem::take(&mut self.scratch);
        for (key, v) in &scratch {
            let i = match self.index.get(key) {
                Some(i) => *i,
                None => {
                    self.index.insert(key.clone(), self.keys.len());
                    self.keys.push(key.clone());
                    self.values.push(vec![0; SLOTS]);
                    self.keys.len() - 1
                }
            };
            self.values[i][self.slot] = *v;
        }
        self.scratch = scratch;
        if let Some(g) = group.filter(|_| query.grouping.is_some()) {
            self.groups.insert(g);
        }
        self.records += 1;
        self.slot += 1;
        if self.slot == SLOTS {
            self.flush()?;
        }
        Ok(())
    }

    /// Encrypts the current lists (the slots not written are zeros).
    fn flush(&mut self) -> Result<(), AdditiveError> {
        if self.slot == 0 {
            return Ok(());
        }
        for (key, values) in self.keys.iter().zip(&mut self.values) {
            let lists = self
                .encryptor
                .encrypt(&values[..self.slot], key.2.width())?;
            self.out.push(PackedList {
                column: key.clone(),
                lists,
            });
            // Wiped in place: the list is reused.
            values.as_mut_slice().zeroize();
        }
        self.slot = 0;
        Ok(())
    }

    /// The lists encrypted so far (each full list, as it fills), handed
    /// over now so they need not wait for the end.
    pub fn drain(&mut self) -> Vec<PackedList> {
        std::mem::take(&mut self.out)
    }

    /// Encrypts what is left and hands everything over.
    pub fn finish(mut self) -> Result<Packed, AdditiveError> {
        self.flush()?;
        Ok(Packed {
            lists: std::mem::take(&mut self.out),
            records: self.records,
            groups: std::mem::take(&mut self.groups),
        })
    }
}

/// Where lists go as the packers fill them, with their epoch, while a job
/// streams them to its compute stage.
pub type Forward = std::sync::Arc<dyn Fn(u64, Vec<PackedList>) + Send + Sync>;

/// Where the workers' packers hand their lists: the ingestion side of the
/// lane, with the public key each worker's packer encrypts under. The
/// lists are kept here, or handed on as they come ([`PackSink::forward`]).
pub struct PackSink {
    key: PublicKey,
    lists: std::sync::Mutex<Vec<(u64, PackedList)>>,
    forward: std::sync::RwLock<Option<Forward>>,
}

impl std::fmt::Debug for PackSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackSink").finish_non_exhaustive()
    }
}

impl PackSink {
    /// A sink whose packers encrypt under `key`.
    pub fn new(key: PublicKey) -> PackSink {
        PackSink {
            key,
            lists: std::sync::Mutex::new(Vec::new()),
            forward: std::sync::RwLock::new(None),
        }
    }

    /// Hands every list put from now on to `to` instead of keeping it
    /// (`None`: keep them again).
    pub fn forward(&self, to: Option<Forward>) {
        *self.forward.write().expect("no panic holding it") = to;
    }

    /// A new packer under the sink's key.
    pub fn packer(&self) -> Packer {
        Packer::new(self.key.clone())
    }

    /// Takes a packer's lists of `epoch`: hands them on, or keeps them.
    pub fn put(&self, epoch: u64, lists: Vec<PackedList>) {
        let forward = self.forward.read().expect("no panic holding it").clone();
        match forward {
            Some(to) => to(epoch, lists),
            None => self
                .lists
                .lock()
                .expect("no panic holding it")
                .extend(lists.into_iter().map(|l| (epoch, l))),
        }
    }

    /// Every list kept so far, with its epoch.
    pub fn take(&self) -> Vec<(u64, PackedList)> {
        std::mem::take(&mut *self.lists.lock().expect("no panic holding it"))
    }
}

/// The compute stage: adds each column's lists and reduces every column to
/// one ciphertext per residue. Holds no key. A column beyond the noise
/// budget is an error: nothing is decrypted.
pub fn reduce(lists: Vec<PackedList>) -> Result<Vec<(ColumnKey, Reduced)>, AdditiveError> {
    let mut reducer = Reducer::default();
    for list in &lists {
        reducer.add(list)?;
    }
    Ok(reducer.finish())
}

/// [`reduce`] a list at a time, as they come: it keeps one running sum
/// per column, not the lists.
#[derive(Default)]
pub struct Reducer {
    columns: BTreeMap<ColumnKey, Column>,
}

impl std::fmt::Debug for Reducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reducer")
            .field("columns", &self.columns.len())
            .finish()
    }
}

impl Reducer {
    /// Adds `list` to its column's sum.
    pub fn add(&mut self, list: &PackedList) -> Result<(), AdditiveError> {
        self.columns
            .entry(list.column.clone())
            .or_insert_with(|| Column::new(list.column.2.width()))
            .add(&list.lists)
    }

    /// Reduces every column to one ciphertext per residue.
    pub fn finish(self) -> Vec<(ColumnKey, Reduced)> {
        self.columns
            .into_iter()
            .map(|(key, column)| (key, column.reduce()))
            .collect()
    }
}

/// What a job handed its compute stage, column by column: the key
/// holder's measure of what it may decrypt ([`Ledger::check`]).
#[derive(Debug, Default)]
pub struct Ledger {
    columns: BTreeMap<ColumnKey, Sent>,
}

impl Ledger {
    /// Records `list` as it is sent.
    pub fn record(&mut self, list: &PackedList) -> Result<(), AdditiveError> {
        self.columns
            .entry(list.column.clone())
            .or_insert_with(|| Sent::new(list.column.2.width()))
            .add(&list.lists)
    }

    /// Whether nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// Whether `reduced` is exactly the reduction of the columns sent:
    /// each column once, none missing, each the sum of its lists
    /// ([`Sent::check`]). Errors name a column by its aggregate and
    /// quantity, never by its group key.
    pub fn check(&self, reduced: &[(ColumnKey, Reduced)]) -> Result<(), AdditiveError> {
        let mut seen = BTreeSet::new();
        for ((agg, group, quantity), r) in reduced {
            let key = (*agg, group.clone(), *quantity);
            let name =
                format!("the compute stage returned a column of aggregate {agg} ({quantity:?})");
            let Some(sent) = self.columns.get(&key) else {
                return Err(AdditiveError::NotSent(format!(
                    "{name} that is a column the job never sent"
                )));
            };
            if !seen.insert(key) {
                return Err(AdditiveError::NotSent(format!("{name} twice")));
            }
            sent.check(r)
                .map_err(|e| AdditiveError::NotSent(format!("{name} {e}")))?;
        }
        if let Some((agg, _, quantity)) = self.columns.keys().find(|k| !seen.contains(*k)) {
            return Err(AdditiveError::NotSent(format!(
                "a column of aggregate {agg} ({quantity:?}) that the job sent was not returned by the compute stage"
            )));
        }
        Ok(())
    }
}

/// A compute stage's answer (bincode, as its worker writes it), decoded
/// allocating no more than its own length and with no bytes left over: the
/// stage is not trusted, and its answer is bounded already by the sandbox
/// (at most its memory limit).
pub fn decode_stage_answer<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bincode::Result<T> {
    use bincode::Options;
    bincode::options()
        .with_fixint_encoding()
        .with_limit(bytes.len() as u64)
        .deserialize(bytes)
}

/// Fuzzing entry point: any bytes as a compute stage's answer on the job's
/// side: as the additive path's reduced columns, checked against a ledger
/// of one sent column, and as the programmable path's encrypted
/// aggregates. Never panics.
pub fn fuzz_stage_answer(data: &[u8]) {
    if let Ok(reduced) = decode_stage_answer::<Vec<(ColumnKey, Reduced)>>(data) {
        let mut ledger = Ledger::default();
        let sent = PackedList {
            column: (0, Value::Null, Quantity::Count),
            lists: vec![List(vec![0; 2 * SLOTS]); Width::Count.residues()],
        };
        ledger.record(&sent).expect("a well-formed list");
        let _ = ledger.check(&reduced);
    }
    let _ = decode_stage_answer::<Vec<symbiont_crypto::programmable::Encrypted>>(data);
}

/// The key holder's totals as partials of the homomorphic lane: `(aggregate,
/// group)` to its partial.
pub fn decrypted_partials(
    totals: &[(ColumnKey, i128)],
) -> Result<BTreeMap<(u32, Value), Partial>, AdditiveError> {
    let mut out: BTreeMap<(u32, Value), Partial> = BTreeMap::new();
    for ((agg, group, quantity), total) in totals {
        let p = out.entry((*agg, group.clone())).or_default();
        match quantity {
            Quantity::Count => {
                p.count =
                    i64::try_from(*total).map_err(|_| AdditiveError::Malformed("count range"))?
            }
            Quantity::IntSum => p.int_sum = *total,
            Quantity::FloatSum => {
                p.float_sum = TotalF64(*total as f64 / FLOAT_SCALE);
                p.floats = 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_decode_as_written_and_refuse_lengths_past_their_bytes() {
        let reduced: Vec<(u32, Vec<u64>)> = vec![(1, vec![2, 3]), (4, vec![])];
        let bytes = bincode::serialize(&reduced).unwrap();
        let decoded: Vec<(u32, Vec<u64>)> = decode_stage_answer(&bytes).unwrap();
        assert_eq!(decoded, reduced);
        // Trailing bytes; a string claiming 2^40 bytes in 8.
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_stage_answer::<Vec<(u32, Vec<u64>)>>(&longer).is_err());
        let mut claim = (1u64 << 40).to_le_bytes().to_vec();
        claim.extend([b'x'; 8]);
        assert!(decode_stage_answer::<String>(&claim).is_err());
    }

    #[test]
    fn the_fuzz_entry_point_takes_an_honest_answer_and_noise() {
        let column: ColumnKey = (0, Value::Null, Quantity::Count);
        let mut sent = Column::new(Width::Count);
        sent.add(&vec![List(vec![0; 2 * SLOTS]); 2]).unwrap();
        let answer = bincode::serialize(&vec![(column, sent.reduce())]).unwrap();
        fuzz_stage_answer(&answer);
        fuzz_stage_answer(&answer[..answer.len() / 2]);
        fuzz_stage_answer(b"\xff\xff\xff\xff\xff\xff\xff\xff");
    }
}
