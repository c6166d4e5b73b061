//! The keystore: one private directory holding the master key, the data
//! keys it wraps, the audit signing key, and (with the homomorphic lane)
//! the TFHE keys.
//!
//! ```text
//! DIR/                       mode 0700; refused if group or others may enter
//!   master-<id>.key          the master key, raw or sealed under Argon2id
//!   keyring.json             data keys wrapped by the master key, and their
//!                            reserved nonce counters
//!   audit_ed25519.key (.pub) the audit signing key and its verifier key
//!   tfhe/                    the homomorphic lane's keys (0700):
//!     additive_secret.key      the key holder's LWE secret key (0600)
//!     additive_public.key      the ingestion stage's compact public key
//!     programmable_client.key  the programmable path's client key (0600)
//!     programmable_server.key  its compressed server key (compute stages)
//!     programmable_public.key  its compact public key (persisting)
//!                              (these three are made by `symbi keys init`,
//!                              or by the first job that persists restricted
//!                              records into a keystore made without them)
//!   .lock                    flock(2) taken by every writer
//! ```
//!
//! `keyring.json` names the master key that wraps its data keys; it is only
//! ever replaced by an atomic rename, so it and the master key it names are
//! always consistent. [`Keystore::rotate`] writes the new master key, then
//! the re-wrapped keyring (the commit point), then deletes the old master
//! key; any other `master-*.key` found on open is the debris of a rotation
//! that stopped and is deleted. Files are written to a temporary name,
//! fsynced, renamed, and the directory fsynced.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::aead::{AeadError, Backend, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::envelope::{DataKey, KEY_ID_LEN, KeyId, NonceSource};
use symbiont_audit::{AuditSigningKey, KeyError};

/// The homomorphic lane's secret (client) key, read by the key holder's
/// decrypt stage only.
pub const ADDITIVE_SECRET_FILE: &str = "tfhe/additive_secret.key";
/// The homomorphic lane's public key, for the ingestion stage.
pub const ADDITIVE_PUBLIC_FILE: &str = "tfhe/additive_public.key";

/// The programmable path's client key: the key holder's only.
pub const PROGRAMMABLE_CLIENT_FILE: &str = "tfhe/programmable_client.key";
/// The programmable path's compressed server key, for compute stages.
pub const PROGRAMMABLE_SERVER_FILE: &str = "tfhe/programmable_server.key";
/// The programmable path's compact public key, for persisting.
pub const PROGRAMMABLE_PUBLIC_FILE: &str = "tfhe/programmable_public.key";
/// How much of the programmable key's decryption budget is spent
/// ([`crate::programmable::leaked_bits`]): a decimal number of bits.
pub const PROGRAMMABLE_SPENT_FILE: &str = "tfhe/programmable_spent";

/// The audit signing key's file name in the keystore.
pub const AUDIT_KEY_FILE: &str = "audit_ed25519.key";
const KEYRING: &str = "keyring.json";
const KEYRING_FORMAT: &str = "symbiont-keyring v1";
const MASTER_FORMAT: &str = "symbiont-master-key v1";
const WRAP_DOMAIN: &[u8] = b"symbiont-data-key v1";
const SEAL_DOMAIN: &[u8] = b"symbiont-master-key v1";

/// Nonces (sealed messages) one data key may seal before it is replaced:
/// 2^32. Counter nonces never repeat, so this is not a birthday bound; it
/// keeps each key's use far inside AES-GCM's confidentiality bound
/// (`docs/FORMATS.md`, "Nonces and key limits").
pub const DATA_KEY_LIMIT: u64 = 1 << 32;
/// Nonces reserved (and persisted) at a time.
pub const RESERVE_CHUNK: u64 = 4096;

/// Argon2id cost for sealing the master key under a passphrase: RFC 9106's
/// second recommended option (64 MiB, 3 passes), one lane.
const ARGON2_M_KIB: u32 = 64 * 1024;
const ARGON2_T: u32 = 3;
const ARGON2_P: u32 = 1;
/// The most a master-key file may ask for (the file is not authenticated
/// before the key derivation runs: a planted one must not make opening the
/// keystore take gigabytes or hours). Four times the cost written.
const ARGON2_MAX_M_KIB: u32 = 4 * ARGON2_M_KIB;
const ARGON2_MAX_T: u32 = 4 * ARGON2_T;
const ARGON2_MAX_P: u32 = 16;

/// Why a keystore operation failed. No variant carries key bytes or a
/// passphrase.
#[derive(Debug, thiserror::Error)]
pub enum KeystoreError {
    /// A file or directory cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory is open to others.
    #[error(
        "{path}: the keystore directory is accessible to others (mode {mode:o}); run `chmod 700` on it"
    )]
    Exposed {
        /// The directory.
        path: PathBuf,
        /// Its mode.
        mode: u32,
    },
    /// The directory belongs to someone else.
    #[error("{path}: the keystore directory belongs to uid {owner}, not to this user")]
    NotOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// `init` on a keystore that has a master key.
    #[error("{0}: the keystore already has a master key")]
    AlreadyInitialised(PathBuf),
    /// No keystore here.
    #[error("{0}: no keystore here; create one with `symbi keys init`")]
    Missing(PathBuf),
    /// A file that is not what it should be.
    #[error("{path}: {what}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// The programmable key's decryption budget would be passed.
    #[error(
        "{path}: the programmable path's key has spent {spent} of its {budget}-bit decryption budget and this job would spend {bits} more (docs/FHE.md); rotate it with `symbi keys rotate --programmable`, then persist the stored datasets again"
    )]
    Budget {
        /// The keystore.
        path: PathBuf,
        /// Bits spent.
        spent: u64,
        /// Bits this job would spend.
        bits: u64,
        /// [`crate::programmable::DECRYPTION_BUDGET_BITS`].
        budget: u64,
    },
    /// The master key is sealed and no passphrase was given.
    #[error("{0}: the master key is sealed under a passphrase; give it with --passphrase-env VAR")]
    PassphraseNeeded(PathBuf),
    /// The passphrase does not open the master key.
    #[error("{0}: wrong passphrase for the master key")]
    WrongPassphrase(PathBuf),
    /// A wrapped data key does not open under the master key.
    #[error("{path}: data key {id} does not unwrap under master key {master} (altered file?)")]
    Unwrap {
        /// The keyring.
        path: PathBuf,
        /// The data key.
        id: KeyId,
        /// The master key.
        master: KeyId,
    },
    /// No data key with this id.
    #[error("{path}: no data key {id}")]
    NoSuchKey {
        /// The keyring.
        path: PathBuf,
        /// The id asked for.
        id: KeyId,
    },
    /// The OS random number generator failed.
    #[error("the OS random number generator failed")]
    Random,
    /// The audit key could not be made.
    #[error(transparent)]
    AuditKey(#[from] KeyError),
}

/// The master key: wraps data keys, nothing else. Never printed.
struct MasterKey {
    id: KeyId,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl MasterKey {
    fn generate() -> Result<MasterKey, KeystoreError> {
        Ok(MasterKey {
            id: KeyId(random()?),
            bytes: Zeroizing::new(random()?),
        })
    }

    fn wrap_aad(&self, id: KeyId, dataset: &str) -> Vec<u8> {
        let mut aad = WRAP_DOMAIN.to_vec();
        aad.extend_from_slice(&self.id.0);
        aad.extend_from_slice(&id.0);
        aad.extend_from_slice(dataset.as_bytes());
        aad
    }

    fn wrap(&self, id: KeyId, dataset: &str, key: &[u8; KEY_LEN]) -> Result<String, KeystoreError> {
        let nonce: [u8; NONCE_LEN] = random()?;
        let mut buf = Zeroizing::new(*key);
        let tag = Backend::DEFAULT.key(&self.bytes).seal(
            &nonce,
            &self.wrap_aad(id, dataset),
            buf.as_mut(),
        );
        let mut out = nonce.to_vec();
        out.extend_from_slice(buf.as_ref());
        out.extend_from_slice(&tag);
        Ok(BASE64.encode(out))
    }

    fn unwrap(&self, id: KeyId, dataset: &str, wrapped: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let raw = BASE64.decode(wrapped).ok()?;
        if raw.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
            return None;
        }
        let nonce: [u8; NONCE_LEN] = raw[..NONCE_LEN].try_into().ok()?;
        let tag: [u8; TAG_LEN] = raw[NONCE_LEN + KEY_LEN..].try_into().ok()?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        key.copy_from_slice(&raw[NONCE_LEN..NONCE_LEN + KEY_LEN]);
        Backend::DEFAULT
            .key(&self.bytes)
            .open(&nonce, &self.wrap_aad(id, dataset), key.as_mut(), &tag)
            .ok()?;
        Some(key)
    }
}

fn random<const N: usize>() -> Result<[u8; N], KeystoreError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| KeystoreError::Random)?;
    Ok(b)
}

/// The master key file.
#[derive(Serialize, Deserialize)]
struct MasterFile {
    format: String,
    id: String,
    created: String,
    /// `none` or `argon2id`.
    protection: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    argon2id: Option<Argon2Params>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sealed: Option<String>,
}

#[derive(Clone, Copy, Serialize, Deserialize)]
struct Argon2Params {
    m_kib: u32,
    t: u32,
    p: u32,
    #[serde(with = "salt_b64")]
    salt: [u8; 16],
}

mod salt_b64 {
    use super::BASE64;
    use base64::Engine;
    pub(super) fn serialize<S: serde::Serializer>(s: &[u8; 16], ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&BASE64.encode(s))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; 16], D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        BASE64
            .decode(s)
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or_else(|| serde::de::Error::custom("a 16-byte base64 salt"))
    }
}

fn passphrase_key(
    params: &Argon2Params,
    passphrase: &[u8],
) -> Result<Zeroizing<[u8; KEY_LEN]>, String> {
    if params.m_kib > ARGON2_MAX_M_KIB || params.t > ARGON2_MAX_T || params.p > ARGON2_MAX_P {
        return Err(format!(
            "Argon2id parameters beyond what this build accepts (m = {} KiB, t = {}, p = {}; at most {ARGON2_MAX_M_KIB} KiB, {ARGON2_MAX_T}, {ARGON2_MAX_P})",
            params.m_kib, params.t, params.p
        ));
    }
    let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(KEY_LEN))
        .map_err(|e| e.to_string())?;
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    a.hash_password_into(passphrase, &params.salt, out.as_mut())
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// One data key in the keyring.
#[derive(Clone, Serialize, Deserialize)]
struct DataKeyEntry {
    id: String,
    dataset: String,
    created: String,
    wrapped: String,
    nonces_reserved: u64,
    retired: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct Keyring {
    format: String,
    master: String,
    data_keys: Vec<DataKeyEntry>,
}

/// A data key as `symbi keys list` shows it: never its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataKeyInfo {
    /// Its id.
    pub id: String,
    /// The dataset it belongs to.
    pub dataset: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// Nonces reserved so far, of [`DATA_KEY_LIMIT`].
    pub nonces_reserved: u64,
    /// Replaced by a newer key (it still opens what it sealed).
    pub retired: bool,
}

/// What is in a keystore, without opening the master key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Listing {
    /// The directory.
    pub dir: PathBuf,
    /// The master key's id.
    pub master_id: String,
    /// When it was made.
    pub master_created: String,
    /// `none` or `argon2id`.
    pub master_protection: String,
    /// The audit signing key's signed-note verifier key, if there is one.
    pub audit_key: Option<String>,
    /// The data keys.
    pub data_keys: Vec<DataKeyInfo>,
    /// Whether `tfhe/` exists.
    pub tfhe_dir: bool,
    /// Whether it holds the homomorphic lane's key pair.
    pub tfhe_keys: bool,
    /// Whether it holds the programmable path's keys.
    pub programmable_keys: bool,
}

/// What `symbi keys list` prints.
impl std::fmt::Display for Listing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "keystore {}", self.dir.display())?;
        writeln!(
            f,
            "  master key  {}  created {}  protection {}",
            self.master_id, self.master_created, self.master_protection
        )?;
        match &self.audit_key {
            Some(k) => writeln!(f, "  audit key   {k}"),
            None => writeln!(f, "  audit key   (none yet)"),
        }?;
        writeln!(
            f,
            "  tfhe keys   {}",
            match (self.tfhe_dir, self.tfhe_keys) {
                (_, true) =>
                    "tfhe/additive_public.key, tfhe/additive_secret.key (the homomorphic lane)",
                (true, false) =>
                    "tfhe/ holds no key pair (a keystore made before the homomorphic lane)",
                (false, _) => "no tfhe/ directory",
            }
        )?;
        writeln!(
            f,
            "  tfhe int   {}",
            if self.programmable_keys {
                "tfhe/programmable_{client,server,public}.key (the programmable path)"
            } else {
                "none yet (made by the first job that persists restricted records)"
            }
        )?;
        if self.data_keys.is_empty() {
            writeln!(
                f,
                "  data keys   none yet (one is made per dataset when a job first seals it)"
            )?;
        }
        for k in &self.data_keys {
            writeln!(
                f,
                "  data key    {}  created {}  dataset {}  nonces reserved {}{}",
                k.id,
                k.created,
                k.dataset,
                k.nonces_reserved,
                if k.retired { "  retired" } else { "" }
            )?;
        }
        Ok(())
    }
}

/// A step of [`Keystore::rotate_with`], for crash tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotateStep {
    /// The new master key file is written and durable.
    NewMasterWritten,
    /// The re-wrapped keyring is written under its temporary name.
    KeyringStaged,
    /// The keyring now names the new master key (the commit point).
    Committed,
    /// The old master key file is deleted.
    OldMasterDeleted,
}

/// An open keystore: the directory, its master key, and the options of
/// this process.
pub struct Keystore {
    dir: PathBuf,
    master: MasterKey,
    backend: Backend,
    data_key_limit: u64,
    reserve_chunk: u64,
    cache: Mutex<BTreeMap<KeyId, Arc<DataKey>>>,
    /// Stray master key files deleted by `open`.
    recovered: Vec<PathBuf>,
    /// Data keys this process made, and the keys they replaced.
    created: Mutex<Vec<DataKeyEvent>>,
}

/// A data key made by [`Keystore::reserve_nonces`], for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DataKeyEvent {
    /// The new key's id.
    pub id: String,
    /// Its dataset.
    pub dataset: String,
    /// The key it replaced, retired at its nonce limit.
    pub retired: Option<String>,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keystore")
            .field("dir", &self.dir)
            .field("master_id", &self.master.id)
            .finish_non_exhaustive()
    }
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> KeystoreError + '_ {
    move |source| KeystoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `dir` mode 0700 if it does not exist; refuses one that others
/// may enter or that belongs to someone else.
fn private_dir(dir: &Path, create: bool) -> Result<(), KeystoreError> {
    if create && !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
    }
    let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => KeystoreError::Missing(dir.to_owned()),
        _ => io(dir)(e),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeystoreError::Exposed {
            path: dir.to_owned(),
            mode,
        });
    }
    let me = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if me.is_some_and(|uid| uid != meta.uid()) {
        return Err(KeystoreError::NotOwner {
            path: dir.to_owned(),
            owner: meta.uid(),
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` durably and atomically: a private temporary
/// file, fsync, rename, fsync of the directory.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    stage(path, bytes)?;
    commit(path)
}

fn staged(path: &Path) -> PathBuf {
    let mut name = path.file_name().expect("a file path").to_owned();
    name.push(".tmp");
    path.with_file_name(name)
}

fn stage(path: &Path, bytes: &[u8]) -> Result<(), KeystoreError> {
    let tmp = staged(path);
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))
}

fn commit(path: &Path) -> Result<(), KeystoreError> {
    std::fs::rename(staged(path), path).map_err(io(path))?;
    sync_dir(path.parent().expect("a file in a directory"))
}

fn sync_dir(dir: &Path) -> Result<(), KeystoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Holds the keystore's writer lock while alive.
struct DirLock(File);

fn lock(dir: &Path) -> Result<DirLock, KeystoreError> {
    let path = dir.join(".lock");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io(&path))?;
    f.lock().map_err(io(&path))?;
    Ok(DirLock(f))
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

fn master_path(dir: &Path, id: KeyId) -> PathBuf {
    dir.join(format!("master-{id}.key"))
}

fn master_files(dir: &Path) -> Result<Vec<PathBuf>, KeystoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("master-") && (name.ends_with(".key") || name.ends_with(".key.tmp")) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, KeystoreError> {
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            KeystoreError::Missing(path.parent().expect("a file in a directory").to_owned())
        }
        _ => io(path)(e),
    })?);
    serde_json::from_slice(&bytes).map_err(|e| KeystoreError::Malformed {
        path: path.to_owned(),
        what: format!("not a valid keystore file ({e})"),
    })
}

fn parse_id(path: &Path, s: &str) -> Result<KeyId, KeystoreError> {
    KeyId::parse(s).ok_or_else(|| KeystoreError::Malformed {
        path: path.to_owned(),
        what: format!("`{s}` is not a key id"),
    })
}

fn write_master(
    dir: &Path,
    master: &MasterKey,
    passphrase: Option<&[u8]>,
    created: &str,
) -> Result<(), KeystoreError> {
    let id = master.id.to_string();
    let mut file = MasterFile {
        format: MASTER_FORMAT.into(),
        id: id.clone(),
        created: created.into(),
        protection: "none".into(),
        key: None,
        argon2id: None,
        sealed: None,
    };
    let encoded = Zeroizing::new(BASE64.encode(master.bytes.as_ref()));
    match passphrase {
        None => file.key = Some(encoded.to_string()),
        Some(pass) => {
            let params = Argon2Params {
                m_kib: ARGON2_M_KIB,
                t: ARGON2_T,
                p: ARGON2_P,
                salt: random()?,
            };
            let kek = passphrase_key(&params, pass).map_err(|what| KeystoreError::Malformed {
                path: dir.to_owned(),
                what,
            })?;
            let nonce: [u8; NONCE_LEN] = random()?;
            let mut buf = Zeroizing::new(*master.bytes);
            let mut aad = SEAL_DOMAIN.to_vec();
            aad.extend_from_slice(&master.id.0);
            let tag = Backend::DEFAULT.key(&kek).seal(&nonce, &aad, buf.as_mut());
            let mut sealed = nonce.to_vec();
            sealed.extend_from_slice(buf.as_ref());
            sealed.extend_from_slice(&tag);
            file.protection = "argon2id".into();
            file.argon2id = Some(params);
            file.sealed = Some(BASE64.encode(sealed));
        }
    }
    let json = Zeroizing::new(serde_json::to_vec_pretty(&file).expect("serialisable"));
    if let Some(k) = file.key.as_mut() {
        zeroize::Zeroize::zeroize(k);
    }
    write_atomic(&master_path(dir, master.id), &json)
}

fn read_master(
    dir: &Path,
    id: KeyId,
    passphrase: Option<&[u8]>,
) -> Result<MasterKey, KeystoreError> {
    let path = master_path(dir, id);
    let mode = std::fs::metadata(&path)
        .map_err(io(&path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(KeystoreError::Malformed {
            path,
            what: format!(
                "the master key file is readable by others (mode {:o})",
                mode & 0o777
            ),
        });
    }
    let mut file: MasterFile = read_json(&path)?;
    let malformed = |what: &str| KeystoreError::Malformed {
        path: path.clone(),
        what: what.to_owned(),
    };
    if file.format != MASTER_FORMAT || parse_id(&path, &file.id)? != id {
        return Err(malformed("not the master key the keyring names"));
    }
    let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
    match file.protection.as_str() {
        "none" => {
            let encoded = Zeroizing::new(file.key.take().ok_or_else(|| malformed("no key"))?);
            let raw = Zeroizing::new(
                BASE64
                    .decode(encoded.as_bytes())
                    .map_err(|_| malformed("the key is not base64"))?,
            );
            if raw.len() != KEY_LEN {
                return Err(malformed("the key is not 32 bytes"));
            }
            bytes.copy_from_slice(&raw);
        }
        "argon2id" => {
            let pass = passphrase.ok_or_else(|| KeystoreError::PassphraseNeeded(path.clone()))?;
            let params = file
                .argon2id
                .ok_or_else(|| malformed("no Argon2id parameters"))?;
            let sealed = BASE64
                .decode(
                    file.sealed
                        .as_deref()
                        .ok_or_else(|| malformed("no sealed key"))?,
                )
                .map_err(|_| malformed("the sealed key is not base64"))?;
            if sealed.len() != NONCE_LEN + KEY_LEN + TAG_LEN {
                return Err(malformed("the sealed key has the wrong length"));
            }
            let kek = passphrase_key(&params, pass).map_err(|what| malformed(&what))?;
            let nonce: [u8; NONCE_LEN] = sealed[..NONCE_LEN].try_into().expect("12");
            let tag: [u8; TAG_LEN] = sealed[NONCE_LEN + KEY_LEN..].try_into().expect("16");
            bytes.copy_from_slice(&sealed[NONCE_LEN..NONCE_LEN + KEY_LEN]);
            let mut aad = SEAL_DOMAIN.to_vec();
            aad.extend_from_slice(&id.0);
            Backend::DEFAULT
                .key(&kek)
                .open(&nonce, &aad, bytes.as_mut(), &tag)
                .map_err(|AeadError| KeystoreError::WrongPassphrase(path.clone()))?;
        }
        other => return Err(malformed(&format!("unknown protection `{other}`"))),
    }
    Ok(MasterKey { id, bytes })
}

fn read_keyring(dir: &Path) -> Result<(Keyring, KeyId), KeystoreError> {
    let path = dir.join(KEYRING);
    let ring: Keyring = read_json(&path)?;
    if ring.format != KEYRING_FORMAT {
        return Err(KeystoreError::Malformed {
            path,
            what: format!("format `{}` is not `{KEYRING_FORMAT}`", ring.format),
        });
    }
    let master = parse_id(&path, &ring.master)?;
    Ok((ring, master))
}

/// Deletes master key files the keyring does not name: the debris of a
/// rotation that stopped halfway (see the module docs).
fn remove_strays(dir: &Path, master: KeyId) -> Result<Vec<PathBuf>, KeystoreError> {
    let keep = master_path(dir, master);
    let mut removed = Vec::new();
    for path in master_files(dir)? {
        if path != keep {
            std::fs::remove_file(&path).map_err(io(&path))?;
            removed.push(path);
        }
    }
    if !removed.is_empty() {
        sync_dir(dir)?;
    }
    Ok(removed)
}

/// What `init` made.
#[derive(Clone, Debug)]
pub struct InitReport {
    /// The master key's id.
    pub master_id: String,
    /// Whether it is sealed under a passphrase.
    pub sealed: bool,
    /// Whether the audit key was created (it is kept if it exists).
    pub audit_key_created: bool,
}

impl Keystore {
    /// Creates a keystore in `dir` (made mode 0700 if missing): a master
    /// key, sealed under `passphrase` if one is given, an empty keyring,
    /// the audit signing key unless one exists, and `tfhe/`.
    pub fn init(dir: &Path, passphrase: Option<&[u8]>) -> Result<InitReport, KeystoreError> {
        private_dir(dir, true)?;
        let _lock = lock(dir)?;
        if dir.join(KEYRING).exists() {
            return Err(KeystoreError::AlreadyInitialised(dir.to_owned()));
        }
        remove_strays(dir, KeyId([0; KEY_ID_LEN]))?;
        let master = MasterKey::generate()?;
        write_master(dir, &master, passphrase, &now())?;
        let ring = Keyring {
            format: KEYRING_FORMAT.into(),
            master: master.id.to_string(),
            data_keys: Vec::new(),
        };
        write_atomic(
            &dir.join(KEYRING),
            &serde_json::to_vec_pretty(&ring).expect("serialisable"),
        )?;
        let audit = dir.join(AUDIT_KEY_FILE);
        let audit_key_created = !audit.exists();
        if audit_key_created {
            let key = AuditSigningKey::generate("symbiont-audit")?;
            key.save(&audit)?;
            std::fs::write(
                audit.with_extension("pub"),
                key.verifying_key().to_note_key() + "\n",
            )
            .map_err(io(&audit))?;
        }
        let tfhe = dir.join("tfhe");
        if !tfhe.exists() {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&tfhe)
                .map_err(io(&tfhe))?;
        }
        if !dir.join(ADDITIVE_SECRET_FILE).exists() {
            let (secret, public) = crate::additive::generate();
            write_atomic(&dir.join(ADDITIVE_PUBLIC_FILE), &public.to_bytes())?;
            write_atomic(&dir.join(ADDITIVE_SECRET_FILE), &secret.to_bytes())?;
        }
        sync_dir(dir)?;
        Ok(InitReport {
            master_id: master.id.to_string(),
            sealed: passphrase.is_some(),
            audit_key_created,
        })
    }

    /// Whether `dir` holds a keystore.
    pub fn exists(dir: &Path) -> bool {
        dir.join(KEYRING).exists()
    }

    /// Opens the keystore in `dir`, unsealing the master key with
    /// `passphrase` if it is sealed. Deletes the debris of an interrupted
    /// rotation ([`Keystore::recovered`] lists it).
    pub fn open(dir: &Path, passphrase: Option<&[u8]>) -> Result<Keystore, KeystoreError> {
        private_dir(dir, false)?;
        let _lock = lock(dir)?;
        let (_, master_id) = read_keyring(dir)?;
        let recovered = remove_strays(dir, master_id)?;
        let master = read_master(dir, master_id, passphrase)?;
        Ok(Keystore {
            dir: dir.to_owned(),
            master,
            backend: Backend::DEFAULT,
            data_key_limit: DATA_KEY_LIMIT,
            reserve_chunk: RESERVE_CHUNK,
            cache: Mutex::new(BTreeMap::new()),
            recovered,
            created: Mutex::new(Vec::new()),
        })
    }

    /// Uses another AES-GCM implementation for data keys.
    pub fn with_backend(mut self, backend: Backend) -> Keystore {
        self.backend = backend;
        self
    }

    /// Lowers the per-key nonce limit and the reservation size (tests of
    /// key replacement).
    pub fn with_limits(mut self, data_key_limit: u64, reserve_chunk: u64) -> Keystore {
        self.data_key_limit = data_key_limit.min(DATA_KEY_LIMIT);
        self.reserve_chunk = reserve_chunk.clamp(1, self.data_key_limit);
        self
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The AES-GCM implementation of its data keys.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The data keys this process made (each a key event to audit).
    pub fn created_data_keys(&self) -> Vec<DataKeyEvent> {
        self.created.lock().expect("no panic holding it").clone()
    }

    /// Stray master key files that `open` deleted.
    pub fn recovered(&self) -> &[PathBuf] {
        &self.recovered
    }

    /// The homomorphic lane's public key (for the ingestion stage).
    pub fn additive_public_key(&self) -> Result<crate::additive::PublicKey, KeystoreError> {
        let path = self.dir.join(ADDITIVE_PUBLIC_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        crate::additive::PublicKey::from_bytes(&bytes).map_err(|e| KeystoreError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })
    }

    /// The homomorphic lane's secret key, from the keystore in `dir`: only
    /// the key holder's decrypt stage calls this, after the compute stage
    /// has answered. Needs no master key (the file is 0600 in the 0700
    /// keystore, like the audit signing key).
    pub fn additive_secret_key(dir: &Path) -> Result<crate::additive::SecretKey, KeystoreError> {
        private_dir(dir, false)?;
        let path = dir.join(ADDITIVE_SECRET_FILE);
        let bytes = Zeroizing::new(std::fs::read(&path).map_err(io(&path))?);
        crate::additive::SecretKey::from_bytes(&bytes).map_err(|e| KeystoreError::Io {
            path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })
    }

    /// The programmable path's public key, made with its client and
    /// server keys if this keystore has none yet (about 3 s); `true` if
    /// they were made now (a key event to audit).
    pub fn programmable_public_key(
        &self,
    ) -> Result<(crate::programmable::PublicKey, bool), KeystoreError> {
        let created = Keystore::make_programmable_keys(&self.dir)?;
        let path = self.dir.join(PROGRAMMABLE_PUBLIC_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let key =
            crate::programmable::PublicKey::from_bytes(&bytes).map_err(|e| KeystoreError::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
            })?;
        Ok((key, created))
    }

    /// Makes the programmable path's client, server and public keys in the
    /// keystore in `dir` unless it has them (about 3 s); `true` if it made
    /// them.
    pub fn make_programmable_keys(dir: &Path) -> Result<bool, KeystoreError> {
        let path = dir.join(PROGRAMMABLE_PUBLIC_FILE);
        if path.is_file() {
            return Ok(false);
        }
        private_dir(dir, false)?;
        let _lock = lock(dir)?;
        if path.is_file() {
            return Ok(false);
        }
        let (client, server, public) = crate::programmable::generate();
        // The public key last: its presence says all three are there.
        write_atomic(&dir.join(PROGRAMMABLE_CLIENT_FILE), &client)?;
        write_atomic(&dir.join(PROGRAMMABLE_SERVER_FILE), &server)?;
        write_atomic(&path, &public)?;
        sync_dir(&dir.join("tfhe"))?;
        Ok(true)
    }

    /// Charges `bits` against the programmable key's decryption budget
    /// ([`crate::programmable::leaked_bits`]) before the key holder
    /// decrypts; refused, charging nothing, past
    /// [`crate::programmable::DECRYPTION_BUDGET_BITS`]. The id of the key
    /// charged ([`Keystore::programmable_key_id`]): decrypt under that key
    /// only ([`Keystore::programmable_client_key_of`]).
    pub fn spend_programmable_budget(dir: &Path, bits: u64) -> Result<String, KeystoreError> {
        let budget = crate::programmable::DECRYPTION_BUDGET_BITS;
        private_dir(dir, false)?;
        let _lock = lock(dir)?;
        let path = dir.join(PROGRAMMABLE_SPENT_FILE);
        let spent = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .map_err(|_| KeystoreError::Malformed {
                    path: path.clone(),
                    what: "not a number of bits".into(),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&path)(e)),
        };
        let total = spent.saturating_add(bits);
        if total > budget {
            return Err(KeystoreError::Budget {
                path: dir.to_owned(),
                spent,
                bits,
                budget,
            });
        }
        write_atomic(&path, total.to_string().as_bytes())?;
        Keystore::programmable_key_id(dir)
    }

    /// The programmable client key, if it is still the key `key_id` whose
    /// budget a job was charged (not rotated since): read under the
    /// keystore's lock, so a rotation cannot slip in between.
    pub fn programmable_client_key_of(
        dir: &Path,
        key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        private_dir(dir, false)?;
        let _lock = lock(dir)?;
        if Keystore::programmable_key_id(dir)? != key_id {
            return Err(KeystoreError::Malformed {
                path: dir.join(PROGRAMMABLE_PUBLIC_FILE),
                what: "the programmable keys were rotated while the job ran: nothing decrypted"
                    .into(),
            });
        }
        let path = dir.join(PROGRAMMABLE_CLIENT_FILE);
        Ok(Zeroizing::new(std::fs::read(&path).map_err(io(&path))?))
    }

    /// Replaces the programmable path's keys with new ones, with a fresh
    /// decryption budget. TFHE copies stored under the old keys are
    /// refused from then on (their manifests name the old public key):
    /// persist those datasets again. A crash leaves the old keys, or none
    /// (the next job that needs them makes new ones), never a mix.
    pub fn rotate_programmable_keys(dir: &Path) -> Result<(), KeystoreError> {
        private_dir(dir, false)?;
        let _lock = lock(dir)?;
        let public = dir.join(PROGRAMMABLE_PUBLIC_FILE);
        let (client, server, new_public) = crate::programmable::generate();
        // The public key's presence says all three are there: first gone,
        // last back.
        match std::fs::remove_file(&public) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(&public)(e)),
            _ => {}
        }
        sync_dir(&dir.join("tfhe"))?;
        write_atomic(&dir.join(PROGRAMMABLE_CLIENT_FILE), &client)?;
        write_atomic(&dir.join(PROGRAMMABLE_SERVER_FILE), &server)?;
        write_atomic(&dir.join(PROGRAMMABLE_SPENT_FILE), b"0")?;
        write_atomic(&public, &new_public)?;
        sync_dir(&dir.join("tfhe"))
    }

    /// The programmable public key's id: the hex SHA-256 of its file, as
    /// a store's manifest records it.
    pub fn programmable_key_id(dir: &Path) -> Result<String, KeystoreError> {
        let path = dir.join(PROGRAMMABLE_PUBLIC_FILE);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        Ok(crate::programmable::key_id(&bytes))
    }

    /// The programmable path's compressed server key, as bytes (for the
    /// compute stage, which decodes it).
    pub fn programmable_server_key(dir: &Path) -> Result<Vec<u8>, KeystoreError> {
        let path = dir.join(PROGRAMMABLE_SERVER_FILE);
        std::fs::read(&path).map_err(io(&path))
    }

    /// The programmable path's client key, as bytes: only the key holder's
    /// decrypt stage calls this, after the compute stage has answered.
    pub fn programmable_client_key(dir: &Path) -> Result<Zeroizing<Vec<u8>>, KeystoreError> {
        private_dir(dir, false)?;
        let path = dir.join(PROGRAMMABLE_CLIENT_FILE);
        Ok(Zeroizing::new(std::fs::read(&path).map_err(io(&path))?))
    }

    /// The audit signing key's path.
    pub fn audit_key_path(&self) -> PathBuf {
        self.dir.join(AUDIT_KEY_FILE)
    }

    /// Lists `dir` without opening the master key (no passphrase needed).
    pub fn list(dir: &Path) -> Result<Listing, KeystoreError> {
        private_dir(dir, false)?;
        let (ring, master_id) = read_keyring(dir)?;
        // Only the metadata: the key field is skipped, never kept.
        #[derive(Deserialize)]
        struct MasterMeta {
            id: String,
            created: String,
            protection: String,
        }
        let master: MasterMeta = read_json(&master_path(dir, master_id))?;
        let audit_pub = dir.join(AUDIT_KEY_FILE).with_extension("pub");
        Ok(Listing {
            dir: dir.to_owned(),
            master_id: master.id,
            master_created: master.created,
            master_protection: master.protection,
            audit_key: std::fs::read_to_string(audit_pub)
                .ok()
                .map(|s| s.trim().to_owned()),
            data_keys: ring
                .data_keys
                .iter()
                .map(|k| DataKeyInfo {
                    id: k.id.clone(),
                    dataset: k.dataset.clone(),
                    created: k.created.clone(),
                    nonces_reserved: k.nonces_reserved,
                    retired: k.retired,
                })
                .collect(),
            tfhe_dir: dir.join("tfhe").is_dir(),
            tfhe_keys: dir.join(ADDITIVE_SECRET_FILE).is_file()
                && dir.join(ADDITIVE_PUBLIC_FILE).is_file(),
            programmable_keys: dir.join(PROGRAMMABLE_PUBLIC_FILE).is_file(),
        })
    }

    fn unwrap_entry(&self, path: &Path, e: &DataKeyEntry) -> Result<Arc<DataKey>, KeystoreError> {
        let id = parse_id(path, &e.id)?;
        if let Some(k) = self.cache.lock().expect("no panic holding it").get(&id) {
            return Ok(Arc::clone(k));
        }
        let bytes = self
            .master
            .unwrap(id, &e.dataset, &e.wrapped)
            .ok_or_else(|| KeystoreError::Unwrap {
                path: path.to_owned(),
                id,
                master: self.master.id,
            })?;
        let key = Arc::new(DataKey::new(id, &bytes, self.backend));
        self.cache
            .lock()
            .expect("no panic holding it")
            .insert(id, Arc::clone(&key));
        Ok(key)
    }

    /// Every data key of `dataset`, to open what they sealed.
    pub fn data_keys(&self, dataset: &str) -> Result<Vec<Arc<DataKey>>, KeystoreError> {
        let (ring, _) = read_keyring(&self.dir)?;
        let path = self.dir.join(KEYRING);
        ring.data_keys
            .iter()
            .filter(|e| e.dataset == dataset)
            .map(|e| self.unwrap_entry(&path, e))
            .collect()
    }

    /// A data key's bytes, for escrow or for another tool to decrypt with
    /// (`symbi keys export-data-key`).
    pub fn export_data_key(&self, id: KeyId) -> Result<Zeroizing<[u8; KEY_LEN]>, KeystoreError> {
        let (ring, _) = read_keyring(&self.dir)?;
        let path = self.dir.join(KEYRING);
        let e = ring
            .data_keys
            .iter()
            .find(|e| KeyId::parse(&e.id) == Some(id))
            .ok_or(KeystoreError::NoSuchKey {
                path: path.clone(),
                id,
            })?;
        self.master
            .unwrap(id, &e.dataset, &e.wrapped)
            .ok_or(KeystoreError::Unwrap {
                path,
                id,
                master: self.master.id,
            })
    }

    /// Reserves nonces for `dataset` under its current data key, making a
    /// new key when there is none or when the current one would pass its
    /// limit. The reservation is durable before it is returned.
    pub fn reserve_nonces(
        &self,
        dataset: &str,
    ) -> Result<(Arc<DataKey>, Range<u64>), KeystoreError> {
        let _lock = lock(&self.dir)?;
        let (mut ring, master) = read_keyring(&self.dir)?;
        let path = self.dir.join(KEYRING);
        if master != self.master.id {
            return Err(KeystoreError::Malformed {
                path,
                what: "the master key was rotated while this job ran; run it again".into(),
            });
        }
        let chunk = self.reserve_chunk;
        let current = ring
            .data_keys
            .iter()
            .position(|e| e.dataset == dataset && !e.retired);
        let index = match current {
            Some(i) if ring.data_keys[i].nonces_reserved + chunk <= self.data_key_limit => i,
            _ => {
                let mut retired = None;
                if let Some(i) = current {
                    ring.data_keys[i].retired = true;
                    retired = Some(ring.data_keys[i].id.clone());
                }
                let id = KeyId(random()?);
                self.created
                    .lock()
                    .expect("no panic holding it")
                    .push(DataKeyEvent {
                        id: id.to_string(),
                        dataset: dataset.to_owned(),
                        retired,
                    });
                let bytes = Zeroizing::new(random::<KEY_LEN>()?);
                ring.data_keys.push(DataKeyEntry {
                    id: id.to_string(),
                    dataset: dataset.to_owned(),
                    created: now(),
                    wrapped: self.master.wrap(id, dataset, &bytes)?,
                    nonces_reserved: 0,
                    retired: false,
                });
                ring.data_keys.len() - 1
            }
        };
        let entry = &mut ring.data_keys[index];
        let start = entry.nonces_reserved;
        entry.nonces_reserved += chunk;
        let entry = entry.clone();
        write_atomic(
            &path,
            &serde_json::to_vec_pretty(&ring).expect("serialisable"),
        )?;
        Ok((self.unwrap_entry(&path, &entry)?, start..start + chunk))
    }

    /// Re-wraps every data key under a new master key (sealed under
    /// `new_passphrase` if given), then deletes the old one. Data is not
    /// re-encrypted. Returns the new master key's id.
    pub fn rotate(
        dir: &Path,
        passphrase: Option<&[u8]>,
        new_passphrase: Option<&[u8]>,
    ) -> Result<String, KeystoreError> {
        Keystore::rotate_with(dir, passphrase, new_passphrase, |_| {})
    }

    /// [`Keystore::rotate`], calling `at` after each step (crash tests stop
    /// the process there).
    pub fn rotate_with(
        dir: &Path,
        passphrase: Option<&[u8]>,
        new_passphrase: Option<&[u8]>,
        mut at: impl FnMut(RotateStep),
    ) -> Result<String, KeystoreError> {
        let old = Keystore::open(dir, passphrase)?;
        let _lock = lock(dir)?;
        let (mut ring, _) = read_keyring(dir)?;
        let path = dir.join(KEYRING);
        let new = MasterKey::generate()?;
        write_master(dir, &new, new_passphrase, &now())?;
        at(RotateStep::NewMasterWritten);
        for e in &mut ring.data_keys {
            let id = parse_id(&path, &e.id)?;
            let bytes =
                old.master
                    .unwrap(id, &e.dataset, &e.wrapped)
                    .ok_or(KeystoreError::Unwrap {
                        path: path.clone(),
                        id,
                        master: old.master.id,
                    })?;
            e.wrapped = new.wrap(id, &e.dataset, &bytes)?;
        }
        ring.master = new.id.to_string();
        stage(
            &path,
            &serde_json::to_vec_pretty(&ring).expect("serialisable"),
        )?;
        at(RotateStep::KeyringStaged);
        commit(&path)?;
        at(RotateStep::Committed);
        remove_strays(dir, new.id)?;
        at(RotateStep::OldMasterDeleted);
        Ok(new.id.to_string())
    }
}

impl NonceSource for Keystore {
    fn reserve(&self, dataset: &str) -> Result<(Arc<DataKey>, Range<u64>), String> {
        self.reserve_nonces(dataset).map_err(|e| e.to_string())
    }
}
