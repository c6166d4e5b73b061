//! The homomorphic lane's programmable path: restricted records at rest as
//! TFHE ciphertexts (tfhe's integer API, `FheInt64`), filtered against
//! constants and aggregated — `count`, `sum`, `min`, `max` — without
//! decryption.
//!
//! Roles, as on the additive path (`docs/FHE.md`):
//!
//! - persisting (the data owner) encrypts each record's numeric fields
//!   under the compact public key ([`PublicKey::encrypt`]);
//! - the compute stage gets the server key and the ciphertexts
//!   ([`evaluate`]): comparisons, selections and sums, one record per core
//!   at a time;
//! - the key holder alone reads the client key and decrypts the
//!   aggregates ([`decrypt`]).
//!
//! Parameters: tfhe's default (`ConfigBuilder::default()`, the published
//! 128-bit set `PARAM_MESSAGE_2_CARRY_2_KS_PBS` with TUniform noise,
//! failure probability 2^-128 per bootstrap).

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use tfhe::prelude::*;
use tfhe::safe_serialization::{safe_deserialize, safe_serialize};
use tfhe::{
    ClientKey, CompactCiphertextList, CompactPublicKey, CompressedServerKey, ConfigBuilder,
    FheBool, FheInt64, FheUint32, ServerKey, set_server_key,
};

/// Stored values are below 2^43 in magnitude and a stored dataset holds at
/// most 2^19 restricted records, so no `FheInt64` sum can wrap.
pub const MAX_VALUE_BITS: u32 = 43;
/// The most records [`evaluate`] aggregates (see [`MAX_VALUE_BITS`]).
pub const MAX_RECORDS: usize = 1 << 19;

/// Keys and ciphertexts are at most this large when read back.
const SIZE_LIMIT: u64 = 1 << 30;

/// Why the programmable path failed. No variant carries a value or key.
#[derive(Debug, thiserror::Error)]
pub enum ProgrammableError {
    /// A key or ciphertext does not decode.
    #[error("{0} does not decode: {1}")]
    Decode(&'static str, String),
    /// A value outside the stored range.
    #[error("a value outside the programmable path's range (magnitude below 2^{MAX_VALUE_BITS})")]
    ValueRange,
    /// Too many records.
    #[error("more than {MAX_RECORDS} restricted records: sums could wrap")]
    TooMany,
    /// A record's list does not hold the fields the spec reads.
    #[error("a stored record holds {0} encrypted fields, fewer than the program reads")]
    Shape(usize),
    /// tfhe refused an operation.
    #[error("tfhe: {0}")]
    Tfhe(String),
    /// The compute stage's answer is not what the plan evaluates
    /// ([`decrypt`]): nothing of it is published.
    #[error("the compute stage's answer is not what the plan evaluates: {0}")]
    NotEvaluated(String),
}

/// What a hostile compute stage could read of the client key through one
/// job's answer, in bits, at most: [`decrypt`]'s checks leave a count
/// `records + 1` possible values, a sum `2·count·2^43`, a minimum or
/// maximum `2^44`; and whether the answer was refused is one bit more
/// (`docs/FHE.md`, the key holder as an oracle).
pub fn leaked_bits(spec: &Spec, records: u64) -> u64 {
    let count_bits = u64::from(64 - records.leading_zeros());
    1 + spec
        .aggregates
        .iter()
        .map(|a| {
            count_bits
                + match a.kind {
                    Kind::Count => 0,
                    Kind::Sum => count_bits + u64::from(MAX_VALUE_BITS) + 1,
                    Kind::Min | Kind::Max => u64::from(MAX_VALUE_BITS) + 1,
                }
        })
        .sum::<u64>()
}

/// [`leaked_bits`] a programmable key may spend before it must be
/// rotated: a quarter of the 2,048 binary coordinates of the key its
/// outputs decrypt under (`docs/FHE.md` derives it).
pub const DECRYPTION_BUDGET_BITS: u64 = 512;

fn to_bytes<T: Serialize + tfhe::Versionize + tfhe::named::Named>(object: &T) -> Vec<u8> {
    let mut out = Vec::new();
    safe_serialize(object, &mut out, SIZE_LIMIT).expect("serialisable within the limit");
    out
}

fn from_bytes<T>(what: &'static str, bytes: &[u8]) -> Result<T, ProgrammableError>
where
    T: serde::de::DeserializeOwned + tfhe::Unversionize + tfhe::named::Named,
{
    safe_deserialize(bytes, SIZE_LIMIT).map_err(|e| ProgrammableError::Decode(what, e))
}

/// The three keys, as bytes: (client, compressed server, compact public).
/// The client key is the key holder's; the others are public material.
pub fn generate() -> (zeroize::Zeroizing<Vec<u8>>, Vec<u8>, Vec<u8>) {
    let client = ClientKey::generate(ConfigBuilder::default().build());
    let server = CompressedServerKey::new(&client);
    let public = CompactPublicKey::new(&client);
    (
        zeroize::Zeroizing::new(to_bytes(&client)),
        to_bytes(&server),
        to_bytes(&public),
    )
}

/// The public key persisting encrypts records under (server-side
/// material: it decrypts nothing).
#[derive(Clone)]
pub struct PublicKey(CompactPublicKey, String);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("programmable::PublicKey")
    }
}

/// A public key's id: the hex SHA-256 of its bytes.
pub fn key_id(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl PublicKey {
    /// Decodes a key written by [`generate`].
    pub fn from_bytes(bytes: &[u8]) -> Result<PublicKey, ProgrammableError> {
        from_bytes("the public key", bytes).map(|key| PublicKey(key, key_id(bytes)))
    }

    /// [`key_id`] of the bytes it was decoded from.
    pub fn id(&self) -> &str {
        &self.1
    }

    /// Encrypts one record's numeric fields (integers, fixed-point floats,
    /// booleans as 0/1): one compact list of `FheInt64`, serialized.
    pub fn encrypt(&self, values: &[i64]) -> Result<Vec<u8>, ProgrammableError> {
        if values
            .iter()
            .any(|v| v.unsigned_abs() >= 1 << MAX_VALUE_BITS)
        {
            return Err(ProgrammableError::ValueRange);
        }
        let mut builder = CompactCiphertextList::builder(&self.0);
        for v in values {
            builder.push(*v);
        }
        Ok(to_bytes(&builder.build()))
    }
}

/// A comparison of a stored field with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `==`
    Eq,
}

/// `field op constant`, the field by its index in the record's list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// The encrypted field.
    pub slot: usize,
    /// The comparison.
    pub op: Op,
    /// The constant (scaled like the field).
    pub constant: i64,
}

/// What an aggregate computes over the records that pass its filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kind {
    /// Only the count.
    Count,
    /// The sum of a field (and the count: `avg`).
    Sum,
    /// The smallest value of a field.
    Min,
    /// The largest value of a field.
    Max,
}

/// One aggregate: its filters (indices into [`Spec::comparisons`], all of
/// which must hold) and the field it reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Aggregate {
    /// What it computes.
    pub kind: Kind,
    /// The comparisons that must all hold.
    pub filters: Vec<usize>,
    /// The field (not for `Count`).
    pub slot: Option<usize>,
}

/// What the compute stage evaluates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spec {
    /// The distinct comparisons, each evaluated once per record.
    pub comparisons: Vec<Comparison>,
    /// The aggregates.
    pub aggregates: Vec<Aggregate>,
}

/// An aggregate's encrypted result: the count of records that passed its
/// filters (`FheUint32`) and its value (`FheInt64`: the sum, or the min or
/// max — for no record, `i64::MAX` or `i64::MIN`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Encrypted {
    /// The count, serialized.
    pub count: Vec<u8>,
    /// The value, serialized.
    pub value: Option<Vec<u8>>,
}

/// The compute stage: evaluates `spec` over the records' lists with the
/// (compressed) server key, in parallel over the cores. Holds no client key.
pub fn evaluate(
    server: &[u8],
    records: &[Vec<u8>],
    spec: &Spec,
) -> Result<Vec<Encrypted>, ProgrammableError> {
    if records.len() > MAX_RECORDS {
        return Err(ProgrammableError::TooMany);
    }
    let server: CompressedServerKey = from_bytes("the server key", server)?;
    let server: ServerKey = server.decompress();
    // tfhe's server key is per thread (an `Arc` inside: cheap to clone).
    rayon::broadcast(|_| set_server_key(server.clone()));
    set_server_key(server);
    let needed: usize = spec
        .comparisons
        .iter()
        .map(|c| c.slot + 1)
        .chain(spec.aggregates.iter().filter_map(|a| a.slot.map(|s| s + 1)))
        .max()
        .unwrap_or(0);
    // Per record, each aggregate's contribution: whether the record passed
    // its filters (`None`: it has none) and the value it adds, selected by
    // that.
    type Contribution = (Option<FheBool>, Option<FheInt64>);
    let per_record: Vec<Vec<Contribution>> = records
        .par_iter()
        .map(|bytes| {
            let list: CompactCiphertextList = from_bytes("a stored record", bytes)?;
            if list.len() < needed {
                return Err(ProgrammableError::Shape(list.len()));
            }
            let expanded = list
                .expand()
                .map_err(|e| ProgrammableError::Tfhe(e.to_string()))?;
            let fields: Vec<FheInt64> = (0..needed)
                .map(|i| match expanded.get::<FheInt64>(i) {
                    Ok(Some(v)) => Ok(v),
                    Ok(None) => Err(ProgrammableError::Shape(i)),
                    Err(e) => Err(ProgrammableError::Tfhe(e.to_string())),
                })
                .collect::<Result<_, _>>()?;
            let holds: Vec<FheBool> = spec
                .comparisons
                .iter()
                .map(|c| {
                    let f = &fields[c.slot];
                    match c.op {
                        Op::Ge => f.ge(c.constant),
                        Op::Lt => f.lt(c.constant),
                        Op::Eq => f.eq(c.constant),
                    }
                })
                .collect();
            Ok(spec
                .aggregates
                .iter()
                .map(|a| {
                    let mask = a
                        .filters
                        .iter()
                        .map(|i| holds[*i].clone())
                        .reduce(|x, y| x & y);
                    let value = a.slot.map(|s| {
                        let v = &fields[s];
                        match &mask {
                            Some(m) => {
                                m.if_then_else(v, &FheInt64::encrypt_trivial(a.kind.neutral()))
                            }
                            None => v.clone(),
                        }
                    });
                    (mask, value)
                })
                .collect())
        })
        .collect::<Result<_, ProgrammableError>>()?;
    let mut out = Vec::with_capacity(spec.aggregates.len());
    for (i, a) in spec.aggregates.iter().enumerate() {
        let count = if a.filters.is_empty() {
            // Every record passes: the stage knows how many there are.
            FheUint32::encrypt_trivial(records.len() as u32)
        } else {
            per_record
                .par_iter()
                .filter_map(|r| r[i].0.as_ref().map(|m| FheUint32::cast_from(m.clone())))
                .reduce(|| FheUint32::encrypt_trivial(0u32), |x, y| x + y)
        };
        let value = a.slot.map(|_| {
            let values = per_record.par_iter().filter_map(|r| r[i].1.clone());
            let neutral = || FheInt64::encrypt_trivial(a.kind.neutral());
            match a.kind {
                Kind::Min => values.reduce(neutral, |x, y| x.min(&y)),
                Kind::Max => values.reduce(neutral, |x, y| x.max(&y)),
                Kind::Count | Kind::Sum => values.reduce(neutral, |x, y| x + y),
            }
        });
        out.push(Encrypted {
            count: to_bytes(&count),
            value: value.as_ref().map(to_bytes),
        });
    }
    Ok(out)
}

impl Kind {
    /// What a record that fails the filters contributes.
    fn neutral(self) -> i64 {
        match self {
            Kind::Min => i64::MAX,
            Kind::Max => i64::MIN,
            Kind::Count | Kind::Sum => 0,
        }
    }
}

/// The key holder: decrypts each aggregate of `spec`, evaluated over
/// `records` records, into (count, value).
///
/// The compute stage may be hostile and return ciphertexts of its own
/// making, whose decryptions are functions of the client key. Nothing
/// tells such a ciphertext from an honest one, so what is checked is what
/// decrypting may publish: exactly one answer per aggregate of the plan,
/// a value exactly where the aggregate has one (before anything is
/// decrypted); then every count at most `records`, and every value in the
/// range the aggregate can reach. An answer outside those is refused and
/// none of it is returned; what remains readable is bounded by
/// [`leaked_bits`], which the keystore charges against the key's budget.
pub fn decrypt(
    client: &[u8],
    results: &[Encrypted],
    spec: &Spec,
    records: u64,
) -> Result<Vec<(i64, Option<i64>)>, ProgrammableError> {
    let refuse = |why: String| Err(ProgrammableError::NotEvaluated(why));
    if results.len() != spec.aggregates.len() {
        return refuse(format!(
            "{} answers for {} aggregates",
            results.len(),
            spec.aggregates.len()
        ));
    }
    for (i, (r, a)) in results.iter().zip(&spec.aggregates).enumerate() {
        if r.value.is_some() != (a.kind != Kind::Count) {
            return refuse(format!(
                "aggregate {i} has a value where it should not, or none"
            ));
        }
    }
    let key: ClientKey = from_bytes("the client key", client)?;
    let limit = 1i128 << MAX_VALUE_BITS;
    let mut out = Vec::with_capacity(results.len());
    // A ciphertext of another shape than the key's makes tfhe's decryption
    // assert: that is a refusal, not a crash of the key holder.
    let decrypting = |what: &'static str| {
        move |_| {
            ProgrammableError::Decode(what, "not a ciphertext under this key's parameters".into())
        }
    };
    for (i, (r, a)) in results.iter().zip(&spec.aggregates).enumerate() {
        let count: FheUint32 = from_bytes("an encrypted count", &r.count)?;
        let count: u32 =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| count.decrypt(&key)))
                .map_err(decrypting("an encrypted count"))?;
        let value = match &r.value {
            Some(v) => {
                let v: FheInt64 = from_bytes("an encrypted value", v)?;
                Some(
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| v.decrypt(&key)))
                        .map_err(decrypting("an encrypted value"))?,
                )
            }
            None => None,
        };
        let reachable = match (a.kind, value) {
            (Kind::Count, _) | (_, None) => true,
            // Nothing passed: the neutral element.
            (Kind::Sum, Some(v)) if count == 0 => v == 0,
            (Kind::Sum, Some(v)) => i128::from(v).abs() < i128::from(count) * limit,
            (Kind::Min, Some(v)) if count == 0 => v == i64::MAX,
            (Kind::Max, Some(v)) if count == 0 => v == i64::MIN,
            (Kind::Min | Kind::Max, Some(v)) => i128::from(v).abs() < limit,
        };
        if u64::from(count) > records || !reachable {
            return refuse(format!(
                "aggregate {i} decrypts outside what {records} records can give"
            ));
        }
        out.push((i64::from(count), value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_aggregates_equal_the_plain_ones() {
        let (client, server, public) = generate();
        let rows: [[i64; 2]; 4] = [[70, 10], [30, -5], [65, 7], [80, 1 << 40]];
        let key = PublicKey::from_bytes(&public).unwrap();
        let records: Vec<Vec<u8>> = rows.iter().map(|r| key.encrypt(r).unwrap()).collect();
        let spec = Spec {
            comparisons: vec![
                Comparison {
                    slot: 0,
                    op: Op::Ge,
                    constant: 65,
                },
                Comparison {
                    slot: 0,
                    op: Op::Lt,
                    constant: 80,
                },
            ],
            aggregates: vec![
                Aggregate {
                    kind: Kind::Count,
                    filters: vec![0, 1],
                    slot: None,
                },
                Aggregate {
                    kind: Kind::Sum,
                    filters: vec![0],
                    slot: Some(1),
                },
                Aggregate {
                    kind: Kind::Min,
                    filters: vec![],
                    slot: Some(1),
                },
                Aggregate {
                    kind: Kind::Max,
                    filters: vec![1],
                    slot: Some(1),
                },
            ],
        };
        let answer = evaluate(&server, &records, &spec).unwrap();
        let out = decrypt(&client, &answer, &spec, 4).unwrap();
        assert_eq!(out[0], (2, None));
        assert_eq!(out[1], (3, Some(17 + (1 << 40))));
        assert_eq!(out[2], (4, Some(-5)));
        assert_eq!(out[3], (3, Some(10)));
        assert!(matches!(
            key.encrypt(&[1 << MAX_VALUE_BITS]),
            Err(ProgrammableError::ValueRange)
        ));

        // The key holder takes only the plan's answers: one per aggregate,
        // values where they belong, counts within the records.
        let not_evaluated = |r: Result<_, _>| matches!(r, Err(ProgrammableError::NotEvaluated(_)));
        assert!(not_evaluated(decrypt(&client, &answer[..3], &spec, 4)));
        let mut swapped = answer.clone();
        swapped.swap(0, 1);
        assert!(not_evaluated(decrypt(&client, &swapped, &spec, 4)));
        assert!(not_evaluated(decrypt(&client, &answer, &spec, 2)));
        // A value no sum of three values below 2^43 reaches (as a stage
        // would return to read bits of the key in a high block).
        let ck: ClientKey = from_bytes("the client key", &client).unwrap();
        let mut forged = answer.clone();
        forged[1].value = Some(to_bytes(&FheInt64::encrypt(1i64 << 62, &ck)));
        assert!(not_evaluated(decrypt(&client, &forged, &spec, 4)));
        assert_eq!(
            leaked_bits(&spec, 4),
            1 + 3 + (3 + 3 + 44) + (3 + 44) + (3 + 44)
        );
    }
}
