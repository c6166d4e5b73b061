//! Records of the confidential lane in sealed batches: how records become
//! the plaintext of a sealed batch and back, and the plaintext records'
//! wiping.
//!
//! A batch's plaintext is its records one after the other, each one's
//! values in schema order, each value a tag byte and its bytes
//! (`docs/FORMATS.md`, "Sealed batches"):
//!
//! | tag | value | bytes that follow |
//! |---|---|---|
//! | 0 | null | none |
//! | 1 | false | none |
//! | 2 | true | none |
//! | 3 | int | 8, little-endian two's complement |
//! | 4 | float | 8, little-endian IEEE 754 binary64 |
//! | 5 | string | 4-byte little-endian length, then UTF-8 |

use std::sync::{Arc, Mutex};

use symbiont_crypto::{LockStatus, LockedBuf, OpenError, Opener, SealError, Sealer};
use zeroize::Zeroize;

use crate::query::Lane;
use crate::record::{Record, RowError};
use crate::value::Value;

/// The lane byte of a sealed batch.
pub fn lane_byte(lane: Lane) -> u8 {
    lane.index() as u8
}

/// The lane of a lane byte.
pub fn lane_of_byte(b: u8) -> Option<Lane> {
    Lane::ALL.get(usize::from(b)).copied()
}

/// A sealed batch of one lane's records, as it travels between stages.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SealedBatch {
    /// The lane.
    pub lane: Lane,
    /// The sealed bytes (header, ciphertext, tag).
    pub bytes: Arc<[u8]>,
}

/// Records whose values are wiped when dropped: the plaintext of opened
/// batches, and confidential records once sealed.
#[derive(Debug, Default)]
pub struct Plain(pub Vec<Record>);

impl Plain {
    /// Overwrites every value (strings over their whole capacity).
    pub fn wipe(&mut self) {
        for r in &mut self.0 {
            r.line = 0;
            for v in &mut r.values {
                match v {
                    Value::Str(s) => s.zeroize(),
                    Value::Int(i) => i.zeroize(),
                    Value::Float(f) => f.zeroize(),
                    Value::Bool(b) => b.zeroize(),
                    Value::Null => {}
                }
            }
        }
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        self.wipe();
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::Null | Value::Bool(_) => 1,
        Value::Int(_) | Value::Float(_) => 9,
        Value::Str(s) => 5 + s.len(),
    }
}

/// The plaintext length of `records`.
pub fn encoded_len(records: &[Record]) -> usize {
    records.iter().flat_map(|r| &r.values).map(value_len).sum()
}

/// Appends the plaintext of `records` to `out`.
pub fn encode(records: &[Record], out: &mut Vec<u8>) {
    for v in records.iter().flat_map(|r| &r.values) {
        match v {
            Value::Null => out.push(0),
            Value::Bool(false) => out.push(1),
            Value::Bool(true) => out.push(2),
            Value::Int(i) => {
                out.push(3);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(4);
                out.extend_from_slice(&f.to_le_bytes());
            }
            Value::Str(s) => {
                out.push(5);
                out.extend_from_slice(&(s.len() as u32).to_le_bytes());
                out.extend_from_slice(s.as_bytes());
            }
        }
    }
}

/// Why a batch's plaintext did not decode (only possible if the sealer
/// and opener disagree on the schema: the bytes are authenticated).
#[derive(Debug, thiserror::Error)]
#[error("the opened batch does not decode as {0} records of this schema")]
pub struct DecodeError(usize);

/// Decodes the plaintext of `ids.len()` records of `width` fields.
pub fn decode(bytes: &[u8], ids: &[u64], width: usize) -> Result<Plain, DecodeError> {
    let err = || DecodeError(ids.len());
    let mut out = Plain(Vec::with_capacity(ids.len()));
    let mut at = 0;
    let mut take = |n: usize| -> Result<&[u8], DecodeError> {
        let s = bytes.get(at..at + n).ok_or_else(err)?;
        at += n;
        Ok(s)
    };
    for &line in ids {
        let mut values = Vec::with_capacity(width);
        for _ in 0..width {
            let v = match take(1)?[0] {
                0 => Value::Null,
                1 => Value::Bool(false),
                2 => Value::Bool(true),
                3 => Value::Int(i64::from_le_bytes(take(8)?.try_into().expect("8"))),
                4 => Value::Float(f64::from_le_bytes(take(8)?.try_into().expect("8"))),
                5 => {
                    let n = u32::from_le_bytes(take(4)?.try_into().expect("4")) as usize;
                    let s = std::str::from_utf8(take(n)?).map_err(|_| err())?;
                    Value::Str(s.to_owned())
                }
                _ => return Err(err()),
            };
            values.push(v);
        }
        out.0.push(Record { line, values });
    }
    if at != bytes.len() {
        return Err(err());
    }
    Ok(out)
}

/// Seals `records` (wiping them afterwards) into one batch of `lane`.
pub fn seal_records(sealer: &Sealer, lane: Lane, records: Plain) -> Result<SealedBatch, SealError> {
    let ids: Vec<u64> = records.0.iter().map(|r| r.line).collect();
    let len = encoded_len(&records.0);
    let bytes = sealer.seal(lane_byte(lane), &ids, len, |out| encode(&records.0, out))?;
    Ok(SealedBatch {
        lane,
        bytes: bytes.into(),
    })
}

/// What the aggregation stage gets to open the confidential lane: the
/// dataset's data keys (never the master key), and where it reports
/// whether its buffers could be locked into RAM.
#[derive(Debug)]
pub struct LaneOpener {
    opener: Opener,
    lock_status: Mutex<Option<LockStatus>>,
    failures: Mutex<Vec<RowError>>,
}

impl LaneOpener {
    /// Wraps an opener.
    pub fn new(opener: Opener) -> LaneOpener {
        LaneOpener {
            opener,
            lock_status: Mutex::new(None),
            failures: Mutex::new(Vec::new()),
        }
    }

    /// The opener it wraps.
    pub fn opener(&self) -> &Opener {
        &self.opener
    }

    /// The batches that did not open or decode. They fail a job even when
    /// bad rows are quarantined: they are tampering or a wrong key, not
    /// bad input.
    pub fn failures(&self) -> Vec<RowError> {
        self.failures.lock().expect("no panic holding it").clone()
    }

    /// Whether the buffers batches were opened into were locked (`None`:
    /// no batch was opened).
    pub fn lock_status(&self) -> Option<LockStatus> {
        self.lock_status
            .lock()
            .expect("no panic holding it")
            .clone()
    }

    /// Opens `batch` into `buf` and decodes its records; `buf` is wiped
    /// before this returns, and the records are wiped when dropped.
    pub fn open(
        &self,
        batch: &SealedBatch,
        width: usize,
        buf: &mut LockedBuf,
    ) -> Result<Plain, RowError> {
        let fail = |ids: &[u64], e: &dyn std::fmt::Display| {
            let error = RowError {
                line: ids.first().copied().unwrap_or(0),
                field: None,
                reason: format!(
                    "the sealed batch of {} record(s) starting here: {e}",
                    ids.len()
                ),
            };
            self.failures
                .lock()
                .expect("no panic holding it")
                .push(error.clone());
            error
        };
        let header = match self.opener.open(&batch.bytes, buf) {
            Ok(h) => h,
            Err(e) => {
                let ids = match symbiont_crypto::read_header(&batch.bytes) {
                    Ok((h, _, _)) => h.ids,
                    Err(_) => Vec::new(),
                };
                return Err(fail(&ids, &e));
            }
        };
        {
            let mut status = self.lock_status.lock().expect("no panic holding it");
            if status.as_ref() != Some(buf.status()) {
                *status = Some(buf.status().clone());
            }
        }
        if lane_of_byte(header.lane) != Some(batch.lane) {
            buf.clear();
            return Err(fail(
                &header.ids,
                &OpenError::Truncated("lane byte does not match"),
            ));
        }
        let records = decode(buf.as_slice(), &header.ids, width);
        buf.clear();
        records.map_err(|e| fail(&header.ids, &e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            any::<f64>().prop_map(Value::Float),
            ".{0,20}".prop_map(Value::Str),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(rows in prop::collection::vec(prop::collection::vec(value(), 3), 0..20)) {
            let records: Vec<Record> = rows
                .into_iter()
                .enumerate()
                .map(|(i, values)| Record { line: i as u64 + 2, values })
                .collect();
            let mut out = Vec::new();
            encode(&records, &mut out);
            prop_assert_eq!(out.len(), encoded_len(&records));
            let ids: Vec<u64> = records.iter().map(|r| r.line).collect();
            let back = decode(&out, &ids, 3).unwrap();
            prop_assert_eq!(&back.0, &records);
            // Any strict prefix fails to decode (when there is anything).
            if !out.is_empty() {
                prop_assert!(decode(&out[..out.len() - 1], &ids, 3).is_err());
            }
        }
    }

    #[test]
    fn plain_wipes_its_values() {
        let mut p = Plain(vec![Record {
            line: 9,
            values: vec![
                Value::Str("secret".into()),
                Value::Int(42),
                Value::Float(1.5),
            ],
        }]);
        p.wipe();
        assert_eq!(p.0[0].values[0], Value::Str(String::new()));
        assert_eq!(p.0[0].values[1], Value::Int(0));
        assert_eq!(p.0[0].values[2], Value::Float(0.0));
        assert_eq!(p.0[0].line, 0);
    }

    /// A sealed batch that does not open (here a flipped bit, as a hostile
    /// stage or a damaged transfer would give it) fails naming the first
    /// record it holds, and is kept as a failure of the job.
    #[test]
    fn a_batch_that_does_not_open_fails_naming_its_first_record() {
        use symbiont_crypto::{Backend, DataKey, KeyId, NonceSource, SealContext};
        struct Fixed(Arc<DataKey>);
        impl NonceSource for Fixed {
            fn reserve(&self, _: &str) -> Result<(Arc<DataKey>, std::ops::Range<u64>), String> {
                Ok((Arc::clone(&self.0), 0..16))
            }
        }
        let key = Arc::new(DataKey::new(KeyId([3; 16]), &[3; 32], Backend::DEFAULT));
        let context = SealContext::new("ds", &["a"]);
        let sealer = Sealer::new(context.clone(), Arc::new(Fixed(Arc::clone(&key))));
        let records = Plain(vec![Record {
            line: 17,
            values: vec![Value::Int(5)],
        }]);
        let mut batch = seal_records(&sealer, Lane::AesGcm, records).unwrap();
        let mut bytes = batch.bytes.to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        batch.bytes = bytes.into();
        let opener = LaneOpener::new(Opener::new(context, vec![key]));
        let mut buf = LockedBuf::new();
        let error = opener.open(&batch, 1, &mut buf).unwrap_err();
        assert_eq!(error.line, 17);
        assert!(error.reason.contains("failed authentication"), "{error:?}");
        assert_eq!(opener.failures(), vec![error]);
    }
}
