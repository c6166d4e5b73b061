//! Sealed batches: the confidential lane's records as they travel between
//! stages and rest on disk.
//!
//! One sealed batch is one AES-256-GCM message holding the encoded records
//! of one batch, under the data key of their dataset. Its header names the
//! key and lists the records' ids; the associated data binds the dataset
//! id, the field names and that header, so a batch moved to another
//! dataset, another set of fields or other record ids does not open. The
//! byte layout is in `docs/FORMATS.md` ("Sealed batches").
//!
//! No batch is sealed under the data key itself. Each sealer (one per job
//! and dataset) draws a random 256-bit salt and seals under a subkey
//! derived from the data key and that salt with HKDF-SHA256; the salt is in
//! the header. Nonces are 96-bit counters handed out by the keystore in
//! reserved ranges, persisted before use (see [`NonceSource`]), so no nonce
//! repeats under one subkey, across workers, processes or crashes; and a
//! keystore restored from a backup or copied to another host, which hands
//! out the same counters again, hands them out under new subkeys (the
//! chance that two salts meet is 2^-256 a pair).

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex, RwLock};

use crate::aead::{AeadError, Aes256GcmKey, Backend, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::locked::LockedBuf;

/// The format version of the sealed batches this build writes (it reads
/// version 1 too: sealed under the data key itself, without a salt).
pub const SEALED_VERSION: u8 = 2;
/// Bytes in a data key id.
pub const KEY_ID_LEN: usize = 16;
/// Bytes in a subkey salt.
pub const SALT_LEN: usize = 32;
/// The fixed part of a version-1 header: version, lane, key id, nonce,
/// record count.
const FIXED_V1: usize = 1 + 1 + KEY_ID_LEN + NONCE_LEN + 4;
/// Version 2 adds the salt after the key id.
const FIXED_V2: usize = FIXED_V1 + SALT_LEN;
/// HKDF's `info` for a subkey, followed by the data key's id.
const SUBKEY_INFO: &[u8] = b"symbiont sealed-batch subkey v2";
/// The domain separator that starts the associated data.
const AAD_DOMAIN: &[u8] = b"symbiont-sealed-batch v1";

/// A data key id (random, 16 bytes; shown in hex).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl KeyId {
    /// Parses 32 hex digits.
    pub fn parse(s: &str) -> Option<KeyId> {
        if s.len() != 2 * KEY_ID_LEN || !s.is_ascii() {
            return None;
        }
        let mut id = [0; KEY_ID_LEN];
        for (i, b) in id.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(KeyId(id))
    }
}

/// A dataset's data key: its bytes, from which each job's subkeys are
/// derived, zeroized when it is dropped. Nothing prints them.
pub struct DataKey {
    id: KeyId,
    bytes: Box<zeroize::Zeroizing<[u8; KEY_LEN]>>,
    backend: Backend,
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DataKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A key from its id and bytes, on `backend`.
    pub fn new(id: KeyId, bytes: &[u8; KEY_LEN], backend: Backend) -> DataKey {
        DataKey {
            id,
            bytes: Box::new(zeroize::Zeroizing::new(*bytes)),
            backend,
        }
    }

    /// Its id.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The cipher of the subkey for `salt` (HKDF-SHA256: the data key as
    /// input key material, `salt`, and `info` the label and the key's
    /// id), or of the data key itself for a version-1 batch (no salt).
    fn cipher(&self, salt: Option<&[u8; SALT_LEN]>) -> Box<dyn Aes256GcmKey> {
        let Some(salt) = salt else {
            return self.backend.key(&self.bytes);
        };
        let mut info = SUBKEY_INFO.to_vec();
        info.extend_from_slice(&self.id.0);
        let mut subkey = zeroize::Zeroizing::new([0u8; KEY_LEN]);
        hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), &self.bytes[..])
            .expand(&info, &mut subkey[..])
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        self.backend.key(&subkey)
    }
}

/// The data keys an [`Opener`] may use: the keys of one dataset, shared
/// with the [`Sealer`] of the same job, which adds each key it seals with.
/// It holds data keys only, never the master key.
#[derive(Debug, Default)]
pub struct DataKeys(RwLock<Vec<Arc<DataKey>>>);

impl DataKeys {
    /// A set holding `keys`.
    pub fn new(keys: Vec<Arc<DataKey>>) -> DataKeys {
        DataKeys(RwLock::new(keys))
    }

    /// Adds a key unless one with its id is there.
    pub fn insert(&self, key: &Arc<DataKey>) {
        let mut keys = self.0.write().expect("no panic holding it");
        if !keys.iter().any(|k| k.id == key.id) {
            keys.push(Arc::clone(key));
        }
    }

    /// The key with this id.
    pub fn get(&self, id: KeyId) -> Option<Arc<DataKey>> {
        let keys = self.0.read().expect("no panic holding it");
        keys.iter().find(|k| k.id == id).cloned()
    }
}

/// Where sealing gets keys and nonces: the keystore, which persists each
/// reserved range before handing it out, and replaces a data key before
/// its nonce limit is reached.
pub trait NonceSource: Send + Sync {
    /// At least one fresh nonce counter under the dataset's current key.
    fn reserve(&self, dataset: &str) -> Result<(Arc<DataKey>, Range<u64>), String>;
}

/// What a sealed batch is bound to: its dataset and field names.
#[derive(Clone, Debug)]
pub struct SealContext {
    dataset: String,
    aad_prefix: Vec<u8>,
}

impl SealContext {
    /// The context of the records of `dataset` with these fields.
    pub fn new(dataset: &str, fields: &[&str]) -> SealContext {
        let mut aad = AAD_DOMAIN.to_vec();
        put_bytes(&mut aad, dataset.as_bytes());
        aad.extend_from_slice(&(fields.len() as u32).to_le_bytes());
        for f in fields {
            put_bytes(&mut aad, f.as_bytes());
        }
        SealContext {
            dataset: dataset.to_owned(),
            aad_prefix: aad,
        }
    }

    /// The dataset id.
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    fn aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(self.aad_prefix.len() + header.len());
        aad.extend_from_slice(&self.aad_prefix);
        aad.extend_from_slice(header);
        aad
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Why a batch could not be sealed.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The keystore could not reserve nonces.
    #[error("cannot reserve nonces for dataset `{dataset}`: {reason}")]
    Reserve {
        /// The dataset.
        dataset: String,
        /// What the keystore said.
        reason: String,
    },
    /// The operating system gave no random salt.
    #[error("no random salt from the operating system: {0}")]
    Random(String),
}

/// The subkey a sealer seals with, and its next nonces.
struct Current {
    key: Arc<DataKey>,
    salt: [u8; SALT_LEN],
    cipher: Arc<dyn Aes256GcmKey>,
    next: u64,
    end: u64,
}

/// Seals batches of one dataset; shared by every worker of a job.
pub struct Sealer {
    context: SealContext,
    source: Arc<dyn NonceSource>,
    current: Mutex<Option<Current>>,
    publish: Option<Arc<DataKeys>>,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("dataset", &self.context.dataset)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer taking keys and nonces from `source`.
    pub fn new(context: SealContext, source: Arc<dyn NonceSource>) -> Sealer {
        Sealer {
            context,
            source,
            current: Mutex::new(None),
            publish: None,
        }
    }

    /// Also adds every data key it seals with to `keys` (the opener's).
    pub fn publishing_to(mut self, keys: Arc<DataKeys>) -> Sealer {
        self.publish = Some(keys);
        self
    }

    /// Its context.
    pub fn context(&self) -> &SealContext {
        &self.context
    }

    /// Reserves nonces when the current range is used up; a new data key
    /// (or the first) gets a new salt and subkey.
    fn refill(&self, current: &mut Option<Current>) -> Result<(), SealError> {
        if current.as_ref().is_some_and(|c| c.next < c.end) {
            return Ok(());
        }
        let (key, range) = self
            .source
            .reserve(&self.context.dataset)
            .map_err(|reason| SealError::Reserve {
                dataset: self.context.dataset.clone(),
                reason,
            })?;
        if let Some(keys) = &self.publish {
            keys.insert(&key);
        }
        match current {
            Some(c) if c.key.id == key.id => {
                c.next = range.start;
                c.end = range.end;
            }
            _ => {
                let mut salt = [0; SALT_LEN];
                getrandom::fill(&mut salt).map_err(|e| SealError::Random(e.to_string()))?;
                *current = Some(Current {
                    cipher: Arc::from(key.cipher(Some(&salt))),
                    key,
                    salt,
                    next: range.start,
                    end: range.end,
                });
            }
        }
        Ok(())
    }

    /// Seals `payload_len` bytes that `encode` appends to the buffer it is
    /// given, for the records `ids` of `lane`. The plaintext is written
    /// straight into the output (reserved up front, so it is never moved)
    /// and encrypted in place: no other copy exists.
    pub fn seal(
        &self,
        lane: u8,
        ids: &[u64],
        payload_len: usize,
        encode: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Vec<u8>, SealError> {
        // Under the lock only the nonce is taken: workers seal in parallel.
        let (key_id, salt, cipher, nonce) = {
            let mut current = self.current.lock().expect("no thread panicked sealing");
            self.refill(&mut current)?;
            let c = current.as_mut().expect("just filled");
            let mut nonce = [0; NONCE_LEN];
            nonce[4..].copy_from_slice(&c.next.to_be_bytes());
            c.next += 1;
            (c.key.id, c.salt, Arc::clone(&c.cipher), nonce)
        };
        let header_len = FIXED_V2 + 8 * ids.len();
        let mut out = Vec::with_capacity(header_len + 4 + payload_len + TAG_LEN);
        out.push(SEALED_VERSION);
        out.push(lane);
        out.extend_from_slice(&key_id.0);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
        for id in ids {
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.extend_from_slice(&(payload_len as u32).to_le_bytes());
        let start = out.len();
        encode(&mut out);
        assert_eq!(
            out.len() - start,
            payload_len,
            "the encoder wrote the length it announced"
        );
        let aad = self.context.aad(&out[..header_len]);
        let tag = cipher.seal(&nonce, &aad, &mut out[start..]);
        out.extend_from_slice(&tag);
        Ok(out)
    }
}

/// Why a sealed batch did not open. No variant carries plaintext or key
/// bytes.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The bytes end before the batch does.
    #[error("truncated sealed batch ({0})")]
    Truncated(&'static str),
    /// A version this build does not read.
    #[error("sealed batch version {0} is not supported (this build reads versions 1 and 2)")]
    Version(u8),
    /// The batch names a data key the keystore does not have.
    #[error("data key {0} is not in the keystore")]
    UnknownKey(KeyId),
    /// The tag does not authenticate the batch: it was altered, moved to
    /// other records, fields or datasets, or the key is wrong.
    #[error(
        "the ciphertext failed authentication (altered, moved to other records, or the wrong key)"
    )]
    Authentication,
}

impl From<AeadError> for OpenError {
    fn from(_: AeadError) -> OpenError {
        OpenError::Authentication
    }
}

/// A sealed batch's header, readable without a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealedHeader {
    /// The lane byte the sealer wrote.
    pub lane: u8,
    /// The data key.
    pub key: KeyId,
    /// The salt of the subkey it is sealed under (none in version 1).
    pub salt: Option<[u8; SALT_LEN]>,
    /// The nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The records' ids, in order.
    pub ids: Vec<u64>,
}

/// Reads a sealed batch's header. Returns it, the header's length and the
/// payload's range within `bytes`.
pub fn read_header(bytes: &[u8]) -> Result<(SealedHeader, usize, Range<usize>), OpenError> {
    let version = *bytes.first().ok_or(OpenError::Truncated("header"))?;
    let fixed = match version {
        1 => FIXED_V1,
        2 => FIXED_V2,
        v => return Err(OpenError::Version(v)),
    };
    if bytes.len() < fixed {
        return Err(OpenError::Truncated("header"));
    }
    let lane = bytes[1];
    let key = KeyId(bytes[2..2 + KEY_ID_LEN].try_into().expect("16 bytes"));
    let mut at = 2 + KEY_ID_LEN;
    let salt = (version == 2).then(|| {
        at += SALT_LEN;
        bytes[at - SALT_LEN..at].try_into().expect("32 bytes")
    });
    let nonce = bytes[at..at + NONCE_LEN].try_into().expect("12 bytes");
    let n = u32::from_le_bytes(bytes[fixed - 4..fixed].try_into().expect("4"));
    let header_len = (n as usize)
        .checked_mul(8)
        .and_then(|b| b.checked_add(fixed))
        .filter(|&l| l + 4 <= bytes.len())
        .ok_or(OpenError::Truncated("record ids"))?;
    let ids = bytes[fixed..header_len]
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    let len = u32::from_le_bytes(bytes[header_len..header_len + 4].try_into().expect("4"));
    let start = header_len + 4;
    let end = start
        .checked_add(len as usize)
        .filter(|&e| e + TAG_LEN == bytes.len())
        .ok_or(OpenError::Truncated("payload"))?;
    Ok((
        SealedHeader {
            lane,
            key,
            salt,
            nonce,
            ids,
        },
        header_len,
        start..end,
    ))
}

/// Opens sealed batches of one dataset: holds its data keys, nothing else
/// (never the master key).
pub struct Opener {
    context: SealContext,
    keys: Arc<DataKeys>,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("dataset", &self.context.dataset)
            .field(
                "keys",
                &self
                    .keys
                    .0
                    .read()
                    .map(|k| k.iter().map(|k| k.id).collect::<Vec<_>>()),
            )
            .finish()
    }
}

impl Opener {
    /// An opener with these data keys.
    pub fn new(context: SealContext, keys: Vec<Arc<DataKey>>) -> Opener {
        Opener::sharing(context, Arc::new(DataKeys::new(keys)))
    }

    /// An opener using a set of data keys that may grow (see
    /// [`Sealer::publishing_to`]).
    pub fn sharing(context: SealContext, keys: Arc<DataKeys>) -> Opener {
        Opener { context, keys }
    }

    /// Opens `bytes` into `buf` (replacing what it held) and returns the
    /// header; the plaintext is `buf.as_slice()`. On failure `buf` holds
    /// nothing.
    pub fn open(&self, bytes: &[u8], buf: &mut LockedBuf) -> Result<SealedHeader, OpenError> {
        buf.clear();
        let (header, header_len, payload) = read_header(bytes)?;
        let key = self
            .keys
            .get(header.key)
            .ok_or(OpenError::UnknownKey(header.key))?;
        let tag: [u8; TAG_LEN] = bytes[payload.end..].try_into().expect("16 bytes");
        let aad = self.context.aad(&bytes[..header_len]);
        let plain = buf.fill(&bytes[payload]);
        let cipher = key.cipher(header.salt.as_ref());
        if let Err(e) = cipher.open(&header.nonce, &aad, plain, &tag) {
            buf.clear();
            return Err(e.into());
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Arc<DataKey>, Mutex<u64>);

    impl NonceSource for Fixed {
        fn reserve(&self, _: &str) -> Result<(Arc<DataKey>, Range<u64>), String> {
            let mut next = self.1.lock().unwrap();
            let start = *next;
            *next += 2;
            Ok((Arc::clone(&self.0), start..start + 2))
        }
    }

    fn key(b: u8) -> Arc<DataKey> {
        Arc::new(DataKey::new(KeyId([b; 16]), &[b; 32], Backend::DEFAULT))
    }

    fn seal(ctx: &SealContext, k: &Arc<DataKey>, ids: &[u64], msg: &[u8]) -> Vec<u8> {
        let s = Sealer::new(ctx.clone(), Arc::new(Fixed(Arc::clone(k), Mutex::new(0))));
        s.seal(1, ids, msg.len(), |b| b.extend_from_slice(msg))
            .unwrap()
    }

    #[test]
    fn round_trip_and_every_tamper() {
        let ctx = SealContext::new("ds", &["a", "b"]);
        let k = key(1);
        let sealed = seal(&ctx, &k, &[10, 11], b"two records");
        assert!(!sealed.windows(3).any(|w| w == b"two"));
        let opener = Opener::new(ctx.clone(), vec![Arc::clone(&k)]);
        let mut buf = LockedBuf::new();
        let h = opener.open(&sealed, &mut buf).unwrap();
        assert_eq!(
            (h.lane, h.key, h.ids.as_slice()),
            (1, k.id(), &[10, 11][..])
        );
        assert_eq!(buf.as_slice(), b"two records");

        // Every single-bit flip fails, in the header, payload or tag.
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(opener.open(&bad, &mut buf).is_err(), "bit {i}");
            assert!(buf.as_slice().is_empty());
        }
        // Every truncation fails.
        for n in 0..sealed.len() {
            assert!(opener.open(&sealed[..n], &mut buf).is_err(), "len {n}");
        }
        // Other dataset, other fields, other key.
        for other in [
            Opener::new(SealContext::new("ds2", &["a", "b"]), vec![Arc::clone(&k)]),
            Opener::new(SealContext::new("ds", &["a", "c"]), vec![Arc::clone(&k)]),
        ] {
            assert_eq!(
                other.open(&sealed, &mut buf),
                Err(OpenError::Authentication)
            );
        }
        let wrong = Arc::new(DataKey::new(k.id(), &[2; 32], Backend::DEFAULT));
        let o = Opener::new(ctx.clone(), vec![wrong]);
        assert_eq!(o.open(&sealed, &mut buf), Err(OpenError::Authentication));
        let o = Opener::new(ctx, vec![key(3)]);
        assert_eq!(
            o.open(&sealed, &mut buf),
            Err(OpenError::UnknownKey(k.id()))
        );
    }

    #[test]
    fn moved_to_other_records_fails() {
        let ctx = SealContext::new("ds", &["a"]);
        let k = key(1);
        let s = Sealer::new(ctx.clone(), Arc::new(Fixed(Arc::clone(&k), Mutex::new(0))));
        let one = s.seal(1, &[1], 3, |b| b.extend_from_slice(b"one")).unwrap();
        let two = s.seal(1, &[2], 3, |b| b.extend_from_slice(b"two")).unwrap();
        // Nonces differ within one sealer, under one subkey.
        let (h1, h2) = (read_header(&one).unwrap().0, read_header(&two).unwrap().0);
        assert_ne!(h1.nonce, h2.nonce);
        assert_eq!(h1.salt, h2.salt);
        // Batch one's ciphertext under batch two's header.
        let (_, header_len, _) = read_header(&two).unwrap();
        let mut moved = two[..header_len].to_vec();
        moved.extend_from_slice(&one[header_len..]);
        let opener = Opener::new(ctx, vec![k]);
        let mut buf = LockedBuf::new();
        assert_eq!(
            opener.open(&moved, &mut buf),
            Err(OpenError::Authentication)
        );
    }

    /// Issue 21, point 7: a keystore restored from a copy hands out the
    /// same nonce counters again. Two jobs sealing from the same counters
    /// (two sealers from sources in the same state) use the same data key
    /// and nonces, but never the same AES key and nonce: each seals under
    /// its own salt's subkey, and each batch opens.
    #[test]
    fn the_same_counters_after_a_rollback_never_repeat_a_key_and_nonce() {
        let ctx = SealContext::new("ds", &["a"]);
        let k = key(7);
        let job = || Sealer::new(ctx.clone(), Arc::new(Fixed(Arc::clone(&k), Mutex::new(0))));
        let (first, again) = (job(), job());
        let a = first
            .seal(1, &[1], 3, |b| b.extend_from_slice(b"one"))
            .unwrap();
        let b = again
            .seal(1, &[1], 3, |b| b.extend_from_slice(b"one"))
            .unwrap();
        let (ha, hb) = (read_header(&a).unwrap().0, read_header(&b).unwrap().0);
        assert_eq!((ha.key, ha.nonce), (hb.key, hb.nonce), "the rollback");
        assert_ne!(ha.salt, hb.salt);
        // Same plaintext, key id and nonce: different ciphertexts.
        let (_, _, pa) = read_header(&a).unwrap();
        assert_ne!(a[pa.clone()], b[pa]);
        let opener = Opener::new(ctx, vec![k]);
        let mut buf = LockedBuf::new();
        for sealed in [&a, &b] {
            opener.open(sealed, &mut buf).unwrap();
            assert_eq!(buf.as_slice(), b"one");
        }
    }

    /// A version-1 batch (sealed under the data key itself, no salt), as
    /// earlier builds wrote them, still opens; its header is not version 2
    /// with the salt taken away.
    #[test]
    fn a_version_1_batch_opens() {
        let ctx = SealContext::new("ds", &["a"]);
        let k = key(9);
        let nonce = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5];
        let mut v1 = vec![1, 1];
        v1.extend_from_slice(&k.id().0);
        v1.extend_from_slice(&nonce);
        v1.extend_from_slice(&1u32.to_le_bytes());
        v1.extend_from_slice(&42u64.to_le_bytes());
        v1.extend_from_slice(&2u32.to_le_bytes());
        let header_len = v1.len() - 4;
        let start = v1.len();
        v1.extend_from_slice(b"ok");
        let aad = ctx.aad(&v1[..header_len]);
        let tag = Backend::DEFAULT
            .key(&[9; 32])
            .seal(&nonce, &aad, &mut v1[start..]);
        v1.extend_from_slice(&tag);
        let mut buf = LockedBuf::new();
        let h = Opener::new(ctx.clone(), vec![Arc::clone(&k)])
            .open(&v1, &mut buf)
            .unwrap();
        assert_eq!((h.salt, h.nonce, h.ids), (None, nonce, vec![42]));
        assert_eq!(buf.as_slice(), b"ok");
        let mut v3 = v1.clone();
        v3[0] = 3;
        assert_eq!(
            Opener::new(ctx, vec![k]).open(&v3, &mut buf),
            Err(OpenError::Version(3))
        );
    }
}
