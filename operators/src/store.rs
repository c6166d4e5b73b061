//! Encrypted datasets at rest: what `symbi run --persist-encrypted DIR`
//! writes and `--input NAME=DIR` reads back.
//!
//! A store is a directory with `manifest.json` (dataset id, schema, counts,
//! the digest of every frame and carried file, and a seal; no values) and
//! `batches.bin`: a magic line, then length-prefixed frames,
//! each either a sealed batch of an encrypted lane, exactly as it traveled
//! from the classify stage, or a clear batch of public records. Sealed
//! batches keep their lanes: they are not classified again, so encrypted
//! records are never opened outside the aggregation stage (the engine sends
//! public records through the reading program's classify stage, which may
//! only raise them). Layout: `docs/FORMATS.md`
//! ("Encrypted datasets").
//!
//! A store is authenticated as a whole: the manifest lists the SHA-256 of
//! every frame in order, of `tfhe.bin` and of the files the dataset carries
//! (`policy.symbi`, `meta.json`), and its seal is the manifest's own
//! SHA-256 sealed under the dataset's data key. A frame dropped,
//! duplicated, reordered or spliced in from another store, or a side file
//! altered, added or removed, is refused, naming the file.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use symbiont_crypto::{LockedBuf, Opener, Sealer};

use crate::classify::Routed;
use crate::query::{Lane, Schema};
use crate::read::SourceError;
use crate::record::Record;
use crate::sealed::{SealedBatch, decode, encode, encoded_len, lane_of_byte};

/// The first bytes of `batches.bin`.
pub const STORE_MAGIC: &[u8] = b"SYMBIONT-SEALED v1\n";
const MANIFEST_FORMAT: &str = "symbiont-encrypted-dataset v2";
/// The lane byte of a manifest's seal (never a lane of records).
const SEAL_LANE: u8 = b'M';
/// The files a dataset may carry beside its records.
pub const CARRIED_FILES: [&str; 2] = ["policy.symbi", "meta.json"];
const FRAME_CLEAR: u8 = 0;
const FRAME_SEALED: u8 = 1;
/// Frames larger than this are refused as corrupt (a batch is ~100 KiB).
const MAX_FRAME: u32 = 256 << 20;

/// A field of the manifest's schema.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestField {
    /// Its name.
    pub name: String,
    /// Its type (`int`, `float`, `string`, `bool`).
    #[serde(rename = "type")]
    pub ty: String,
}

/// `manifest.json`: what a store holds, without any value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `symbiont-encrypted-dataset v2`.
    pub format: String,
    /// The dataset id the batches are sealed under.
    pub dataset: String,
    /// The record struct's name.
    #[serde(rename = "struct")]
    pub struct_name: String,
    /// Its fields.
    pub fields: Vec<ManifestField>,
    /// Frames in `batches.bin`.
    pub frames: u64,
    /// The SHA-256 (hex) of each frame, its kind byte and its bytes, in
    /// order.
    pub frame_sha256: Vec<String>,
    /// Records per lane (`plaintext`, `aes_gcm`, `homomorphic`).
    pub records: std::collections::BTreeMap<String, u64>,
    /// The restricted records' TFHE copy in `tfhe.bin`, if it was made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tfhe: Option<TfheManifest>,
    /// The files the dataset carries ([`CARRIED_FILES`]): name, SHA-256.
    pub carried: std::collections::BTreeMap<String, String>,
    /// The manifest's seal (hex): a sealed batch under the dataset's data
    /// key, lane byte `M`, no records, whose plaintext is the SHA-256 of
    /// this manifest serialised without its seal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal: Option<String>,
}

/// What `tfhe.bin` holds: one compact list of `FheInt64` per restricted
/// record, the fields in this order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TfheManifest {
    /// `tfhe-integer FheInt64 compact lists v1`.
    pub format: String,
    /// The encrypted fields, in list order.
    pub fields: Vec<String>,
    /// Floats are stored as integers of this many units per 1.
    pub float_scale: f64,
    /// Records in `tfhe.bin`.
    pub records: u64,
    /// The SHA-256 (hex) of `tfhe.bin`.
    pub sha256: String,
    /// The id of the programmable public key the lists are encrypted
    /// under (the hex SHA-256 of its file); absent in stores made before
    /// it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_key_sha256: Option<String>,
}

const TFHE_FORMAT: &str = "tfhe-integer FheInt64 compact lists v1";
/// The first bytes of `tfhe.bin`.
pub const TFHE_MAGIC: &[u8] = b"SYMBIONT-TFHE v1\n";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// The SHA-256 its seal holds: of the manifest serialised without it.
    fn digest(&self) -> [u8; 32] {
        let unsealed = Manifest {
            seal: None,
            ..self.clone()
        };
        Sha256::digest(serde_json::to_vec(&unsealed).expect("serialisable")).into()
    }

    fn fields_of(schema: &Schema) -> Vec<ManifestField> {
        schema
            .fields
            .iter()
            .map(|(n, t)| ManifestField {
                name: n.clone(),
                ty: t.name().to_owned(),
            })
            .collect()
    }
}

/// Whether `path` is a store (a directory with a manifest).
pub fn is_store(path: &Path) -> bool {
    path.join("manifest.json").is_file()
}

/// Writes a store into a directory that does not exist yet.
#[derive(Debug)]
pub struct StoreWriter {
    dir: PathBuf,
    out: BufWriter<File>,
    frame_sha256: Vec<String>,
    records: [u64; 3],
    /// `tfhe.bin`, its records and the digest of what was written, once
    /// the first is written.
    tfhe: Option<(BufWriter<File>, u64, Sha256)>,
    /// The programmable public key's id ([`TfheManifest::public_key_sha256`]).
    tfhe_key: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SourceError + '_ {
    move |source| SourceError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `path` (mode 0600; it must not exist), starting with `magic`.
fn new_private(path: &Path, magic: &[u8]) -> Result<BufWriter<File>, SourceError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    let mut out = BufWriter::new(file);
    out.write_all(magic).map_err(io(path))?;
    Ok(out)
}

impl StoreWriter {
    /// Creates `dir` (which must not exist) and its `batches.bin`.
    pub fn create(dir: &Path) -> Result<StoreWriter, SourceError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        let out = new_private(&dir.join("batches.bin"), STORE_MAGIC)?;
        Ok(StoreWriter {
            dir: dir.to_owned(),
            out,
            frame_sha256: Vec::new(),
            records: [0; 3],
            tfhe: None,
            tfhe_key: String::new(),
        })
    }

    /// Starts `tfhe.bin`, the restricted records' TFHE copy encrypted under
    /// the programmable public key `key_id` (the manifest then lists it,
    /// even if no record is restricted).
    pub fn with_tfhe(&mut self, key_id: &str) -> Result<(), SourceError> {
        key_id.clone_into(&mut self.tfhe_key);
        if self.tfhe.is_none() {
            let out = new_private(&self.dir.join("tfhe.bin"), TFHE_MAGIC)?;
            self.tfhe = Some((out, 0, Sha256::new_with_prefix(TFHE_MAGIC)));
        }
        Ok(())
    }

    /// Appends a restricted record's TFHE ciphertext (its line, then the
    /// list) to `tfhe.bin`, which [`StoreWriter::with_tfhe`] started.
    pub fn tfhe(&mut self, line: u64, ciphertext: &[u8]) -> Result<(), SourceError> {
        let path = self.dir.join("tfhe.bin");
        let Some((out, records, digest)) = self.tfhe.as_mut() else {
            return Err(io(&path)(std::io::Error::other(
                "tfhe.bin was not started: no programmable key was given",
            )));
        };
        let len = u32::try_from(ciphertext.len())
            .map_err(|_| io(&path)(std::io::Error::other("a ciphertext beyond 4 GiB")))?;
        for part in [&line.to_le_bytes()[..], &len.to_le_bytes(), ciphertext] {
            out.write_all(part).map_err(io(&path))?;
            digest.update(part);
        }
        *records += 1;
        Ok(())
    }

    fn frame(&mut self, kind: u8, parts: &[&[u8]]) -> Result<(), SourceError> {
        let path = self.dir.join("batches.bin");
        let len: usize = 1 + parts.iter().map(|p| p.len()).sum::<usize>();
        self.out
            .write_all(&(len as u32).to_le_bytes())
            .and_then(|_| self.out.write_all(&[kind]))
            .map_err(io(&path))?;
        let mut digest = Sha256::new_with_prefix([kind]);
        for p in parts {
            self.out.write_all(p).map_err(io(&path))?;
            digest.update(p);
        }
        self.frame_sha256.push(hex(&digest.finalize()));
        Ok(())
    }

    /// Appends a sealed batch.
    pub fn sealed(&mut self, batch: &SealedBatch) -> Result<(), SourceError> {
        let n = symbiont_crypto::read_header(&batch.bytes)
            .map(|(h, _, _)| h.ids.len() as u64)
            .unwrap_or(0);
        self.records[batch.lane.index()] += n;
        self.frame(FRAME_SEALED, &[&batch.bytes])
    }

    /// Appends public records (any other lane is refused: it must be
    /// sealed).
    pub fn clear(&mut self, records: &[&Record]) -> Result<(), SourceError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut head = vec![crate::sealed::lane_byte(Lane::Plaintext)];
        head.extend_from_slice(&(records.len() as u32).to_le_bytes());
        for r in records {
            head.extend_from_slice(&r.line.to_le_bytes());
        }
        let owned: Vec<Record> = records.iter().map(|r| (*r).clone()).collect();
        let mut body = Vec::with_capacity(encoded_len(&owned));
        encode(&owned, &mut body);
        self.records[Lane::Plaintext.index()] += records.len() as u64;
        self.frame(FRAME_CLEAR, &[&head, &body])
    }

    /// Flushes, writes the files the dataset carries (`carried`: name
    /// among [`CARRIED_FILES`], the bytes the job read), then the manifest
    /// sealed by `sealer`, and syncs everything; `tfhe_fields` names the
    /// fields of the TFHE lists, if any were written.
    pub fn finish(
        mut self,
        dataset: &str,
        schema: &Schema,
        tfhe_fields: &[String],
        carried: &[(&str, &[u8])],
        sealer: &Sealer,
    ) -> Result<(PathBuf, Manifest), SourceError> {
        let path = self.dir.join("batches.bin");
        self.out.flush().map_err(io(&path))?;
        self.out.get_ref().sync_all().map_err(io(&path))?;
        let tfhe = match self.tfhe.take() {
            None => None,
            Some((mut out, records, digest)) => {
                let path = self.dir.join("tfhe.bin");
                out.flush()
                    .and_then(|_| out.get_ref().sync_all())
                    .map_err(io(&path))?;
                Some(TfheManifest {
                    format: TFHE_FORMAT.into(),
                    fields: tfhe_fields.to_vec(),
                    float_scale: crate::homomorphic::FLOAT_SCALE,
                    records,
                    sha256: hex(&digest.finalize()),
                    public_key_sha256: Some(std::mem::take(&mut self.tfhe_key)),
                })
            }
        };
        let mut files = std::collections::BTreeMap::new();
        for (name, bytes) in carried {
            assert!(CARRIED_FILES.contains(name), "{name} is not a carried file");
            let path = self.dir.join(name);
            let mut out = new_private(&path, bytes)?;
            out.flush()
                .and_then(|_| out.get_ref().sync_all())
                .map_err(io(&path))?;
            files.insert((*name).to_owned(), hex(&Sha256::digest(bytes)));
        }
        let mut manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            dataset: dataset.to_owned(),
            struct_name: schema.name.clone(),
            fields: Manifest::fields_of(schema),
            frames: self.frame_sha256.len() as u64,
            frame_sha256: self.frame_sha256,
            records: Lane::ALL
                .iter()
                .map(|l| (l.name().to_owned(), self.records[l.index()]))
                .collect(),
            tfhe,
            carried: files,
            seal: None,
        };
        let digest = manifest.digest();
        let seal = sealer
            .seal(SEAL_LANE, &[], digest.len(), |b| {
                b.extend_from_slice(&digest)
            })
            .map_err(|e| io(&self.dir)(std::io::Error::other(e.to_string())))?;
        manifest.seal = Some(hex(&seal));
        let mpath = self.dir.join("manifest.json");
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&mpath)
                .map_err(io(&mpath))?
        };
        f.write_all(&serde_json::to_vec_pretty(&manifest).expect("serialisable"))
            .and_then(|_| f.sync_all())
            .map_err(io(&mpath))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        Ok((self.dir, manifest))
    }
}

/// Reads a store.
#[derive(Debug)]
pub struct StoreReader {
    dir: PathBuf,
    manifest: Manifest,
}

impl StoreReader {
    /// Opens the store in `dir`, checking that it holds records of
    /// `schema`.
    pub fn open(dir: &Path, schema: &Schema) -> Result<StoreReader, SourceError> {
        let mpath = dir.join("manifest.json");
        let bytes = std::fs::read(&mpath).map_err(io(&mpath))?;
        let manifest = parse_manifest(&mpath, &bytes)?;
        if manifest.fields != Manifest::fields_of(schema) {
            return Err(SourceError::Header {
                path: mpath,
                schema: schema.name.clone(),
                reason: "the stored records have other fields or types".into(),
            });
        }
        Ok(StoreReader {
            dir: dir.to_owned(),
            manifest,
        })
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Checks that the manifest is the one its dataset's data key sealed
    /// (with `opener`, the dataset's keys), and that the files the dataset
    /// carries are the ones it was persisted with: `carried` holds the
    /// SHA-256 of each the job read (name, hex). The frames and `tfhe.bin`
    /// are checked against the manifest as they are read.
    pub fn authenticate(
        &self,
        opener: &Opener,
        carried: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), SourceError> {
        let mpath = self.dir.join("manifest.json");
        let refused = |path: PathBuf, reason: &str| SourceError::Malformed {
            path,
            reason: reason.to_owned(),
        };
        let seal = self
            .manifest
            .seal
            .as_deref()
            .and_then(|h| {
                (h.len() % 2 == 0 && h.is_ascii())
                    .then(|| {
                        (0..h.len())
                            .step_by(2)
                            .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
                            .collect::<Option<Vec<u8>>>()
                    })
                    .flatten()
            })
            .ok_or_else(|| refused(mpath.clone(), "the manifest has no seal"))?;
        let mut buf = LockedBuf::new();
        let not_sealed = || {
            refused(
                mpath.clone(),
                "the manifest is not the one this dataset's key sealed (altered, or from another dataset or key)",
            )
        };
        let header = opener.open(&seal, &mut buf).map_err(|e| match e {
            symbiont_crypto::OpenError::UnknownKey(id) => refused(
                mpath.clone(),
                &format!("its seal's data key {id} is not in the keystore"),
            ),
            _ => not_sealed(),
        })?;
        if header.lane != SEAL_LANE
            || !header.ids.is_empty()
            || buf.as_slice() != self.manifest.digest()
        {
            return Err(not_sealed());
        }
        for name in CARRIED_FILES {
            if self.manifest.carried.get(name) != carried.get(name) {
                return Err(refused(
                    self.dir.join(name),
                    "not the file this dataset was persisted with (altered, added or removed)",
                ));
            }
        }
        Ok(())
    }

    /// The restricted records' TFHE ciphertexts, (line, list) in the order
    /// they were written; an error if the store has none.
    pub fn tfhe_records(&self) -> Result<Vec<(u64, Vec<u8>)>, SourceError> {
        let path = self.dir.join("tfhe.bin");
        let malformed = |reason: String| SourceError::Malformed {
            path: path.clone(),
            reason,
        };
        let Some(tfhe) = &self.manifest.tfhe else {
            return Err(malformed(
                "the dataset keeps no TFHE copy of its restricted records (it was persisted without any, or before the programmable path)".into(),
            ));
        };
        if tfhe.format != TFHE_FORMAT {
            return Err(malformed(format!(
                "format `{}` is not `{TFHE_FORMAT}`",
                tfhe.format
            )));
        }
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        if hex(&Sha256::digest(&bytes)) != tfhe.sha256 {
            return Err(malformed(
                "not the file the manifest lists (altered, truncated or replaced)".into(),
            ));
        }
        let mut rest = bytes
            .strip_prefix(TFHE_MAGIC)
            .ok_or_else(|| malformed("no TFHE magic line".into()))?;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let index = out.len();
            let cut = || malformed(format!("truncated at record {index}"));
            let (line, after) = rest.split_at_checked(8).ok_or_else(cut)?;
            let (len, after) = after.split_at_checked(4).ok_or_else(cut)?;
            let len = u32::from_le_bytes(len.try_into().expect("4")) as usize;
            let (list, after) = after.split_at_checked(len).ok_or_else(cut)?;
            out.push((
                u64::from_le_bytes(line.try_into().expect("8")),
                list.to_vec(),
            ));
            rest = after;
        }
        if out.len() as u64 != tfhe.records {
            return Err(malformed(format!(
                "{} records, the manifest says {}",
                out.len(),
                tfhe.records
            )));
        }
        Ok(out)
    }

    /// Reads the frames numbered `part` modulo `parts`, handing each record
    /// of a clear frame and each sealed batch to `on_item`. Returns the
    /// records handed over.
    pub fn read(
        &self,
        part: usize,
        parts: usize,
        on_item: impl FnMut(Routed),
    ) -> Result<u64, SourceError> {
        let path = self.dir.join("batches.bin");
        let input = BufReader::new(File::open(&path).map_err(io(&path))?);
        read_frames(&self.manifest, &path, input, part, parts, on_item)
    }
}

/// Reads the frames of `batches.bin` from `input` (see [`StoreReader::read`]).
fn read_frames(
    manifest: &Manifest,
    path: &Path,
    mut input: impl Read,
    part: usize,
    parts: usize,
    mut on_item: impl FnMut(Routed),
) -> Result<u64, SourceError> {
    let malformed = |reason: String| SourceError::Malformed {
        path: path.to_owned(),
        reason,
    };
    let mut magic = vec![0; STORE_MAGIC.len()];
    input
        .read_exact(&mut magic)
        .map_err(|_| malformed("not an encrypted dataset (no magic line)".into()))?;
    if magic != STORE_MAGIC {
        return Err(malformed(
            "not an encrypted dataset (bad magic line)".into(),
        ));
    }
    let width = manifest.fields.len();
    let mut records = 0;
    let mut frame = Vec::new();
    let mut offset = STORE_MAGIC.len() as u64;
    for index in 0..manifest.frames {
        let mut len = [0u8; 4];
        input.read_exact(&mut len).map_err(|_| {
            malformed(format!(
                "truncated: frame {index} of {} is missing (byte {offset})",
                manifest.frames
            ))
        })?;
        let len = u32::from_le_bytes(len);
        if len == 0 || len > MAX_FRAME {
            return Err(malformed(format!(
                "frame {index} at byte {offset} has an impossible length {len}"
            )));
        }
        frame.resize(len as usize, 0);
        input.read_exact(&mut frame).map_err(|_| {
            malformed(format!(
                "truncated: frame {index} at byte {offset} is cut short"
            ))
        })?;
        offset += 4 + u64::from(len);
        if index % parts as u64 != part as u64 {
            continue;
        }
        if hex(&Sha256::digest(&frame)) != manifest.frame_sha256[index as usize] {
            return Err(malformed(format!(
                "frame {index} at byte {} is not the frame the manifest lists there (altered, moved, or from another store)",
                offset - 4 - u64::from(len)
            )));
        }
        match frame[0] {
            FRAME_SEALED => {
                let (header, _, _) = symbiont_crypto::read_header(&frame[1..])
                    .map_err(|e| malformed(format!("frame {index}: {e}")))?;
                let lane = lane_of_byte(header.lane)
                    .filter(|&l| l != Lane::Plaintext)
                    .ok_or_else(|| malformed(format!("frame {index}: bad lane")))?;
                records += header.ids.len() as u64;
                on_item(Routed::Sealed(SealedBatch {
                    lane,
                    bytes: Arc::from(&frame[1..]),
                }));
            }
            FRAME_CLEAR => {
                let bad = || malformed(format!("frame {index}: bad clear batch"));
                if frame.len() < 6 || lane_of_byte(frame[1]) != Some(Lane::Plaintext) {
                    return Err(bad());
                }
                let n = u32::from_le_bytes(frame[2..6].try_into().expect("4")) as usize;
                let ids_end = n
                    .checked_mul(8)
                    .and_then(|b| b.checked_add(6))
                    .filter(|&e| e <= frame.len())
                    .ok_or_else(bad)?;
                let ids: Vec<u64> = frame[6..ids_end]
                    .chunks_exact(8)
                    .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                    .collect();
                let mut plain = decode(&frame[ids_end..], &ids, width).map_err(|_| bad())?;
                records += plain.0.len() as u64;
                for r in plain.0.drain(..) {
                    on_item(Routed::Clear(Lane::Plaintext, r));
                }
            }
            k => return Err(malformed(format!("frame {index}: unknown kind {k}"))),
        }
    }
    if input.read(&mut [0u8; 1]).map_err(io(path))? != 0 {
        return Err(malformed(format!(
            "bytes after the {} frames the manifest lists",
            manifest.frames
        )));
    }
    Ok(records)
}

/// `manifest.json`'s bytes (read from `mpath`) as a store's manifest: its
/// format, and a digest for every frame.
fn parse_manifest(mpath: &Path, bytes: &[u8]) -> Result<Manifest, SourceError> {
    let malformed = |reason: String| SourceError::Malformed {
        path: mpath.to_owned(),
        reason,
    };
    let not_a_manifest =
        |e: serde_json::Error| malformed(format!("not an encrypted dataset manifest ({e})"));
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(not_a_manifest)?;
    match value.get("format").and_then(|f| f.as_str()) {
        Some(MANIFEST_FORMAT) => {}
        format => {
            return Err(malformed(format!(
                "format {} is not `{MANIFEST_FORMAT}` (a store written before stores were authenticated as a whole: persist the dataset again)",
                format.map_or("(none)".into(), |f| format!("`{f}`"))
            )));
        }
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(not_a_manifest)?;
    if manifest.frame_sha256.len() as u64 != manifest.frames {
        return Err(malformed(format!(
            "{} frame digests for {} frames",
            manifest.frame_sha256.len(),
            manifest.frames
        )));
    }
    Ok(manifest)
}

/// Fuzzing entry point: any bytes as `manifest.json`, parsed as
/// [`StoreReader::open`] does, then authenticated with a fixed key (its
/// seal decoded and opened) and its TFHE copy looked for. Never panics.
pub fn fuzz_manifest_bytes(data: &[u8]) {
    use symbiont_crypto::{Backend, DataKey, KeyId, SealContext};
    let dir = Path::new("/nonexistent/symbiont-fuzz");
    let Ok(manifest) = parse_manifest(&dir.join("manifest.json"), data) else {
        return;
    };
    let reader = StoreReader {
        dir: dir.to_owned(),
        manifest,
    };
    let key = Arc::new(DataKey::new(KeyId([0; 16]), &[0; 32], Backend::DEFAULT));
    let opener = Opener::new(SealContext::new("fuzz", &["a", "b", "c"]), vec![key]);
    let _ = reader.authenticate(&opener, &Default::default());
    let _ = reader.tfhe_records();
}

/// Fuzzing entry point: any bytes as `batches.bin` of a three-field store
/// (the first byte is the manifest's frame count; the manifest lists the
/// digests of the frames the bytes hold, so that they are read on), every
/// sealed batch opened with a fixed key, and any bytes as a sealed batch's
/// plaintext. Never panics.
pub fn fuzz_store_bytes(data: &[u8]) {
    use symbiont_crypto::{Backend, DataKey, KeyId, SealContext};
    let Some((&frames, rest)) = data.split_first() else {
        return;
    };
    let mut frame_sha256 = Vec::new();
    let mut at = STORE_MAGIC.len();
    while frame_sha256.len() < usize::from(frames) {
        let Some(len) = rest.get(at..at + 4) else {
            break;
        };
        let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
        let Some(frame) = rest.get(at + 4..at + 4 + len) else {
            break;
        };
        frame_sha256.push(hex(&Sha256::digest(frame)));
        at += 4 + len;
    }
    frame_sha256.resize(usize::from(frames), String::new());
    let fields = ["a", "b", "c"];
    let manifest = Manifest {
        format: MANIFEST_FORMAT.into(),
        dataset: "fuzz".into(),
        struct_name: "R".into(),
        fields: fields
            .iter()
            .map(|n| ManifestField {
                name: (*n).into(),
                ty: "int".into(),
            })
            .collect(),
        frames: u64::from(frames),
        frame_sha256,
        records: Default::default(),
        tfhe: None,
        carried: Default::default(),
        seal: None,
    };
    let key = Arc::new(DataKey::new(KeyId([0; 16]), &[0; 32], Backend::DEFAULT));
    let opener =
        crate::sealed::LaneOpener::new(Opener::new(SealContext::new("fuzz", &fields), vec![key]));
    let mut buf = LockedBuf::new();
    let _ = read_frames(&manifest, Path::new("fuzz"), rest, 0, 1, |item| {
        if let Routed::Sealed(batch) = item {
            let _ = opener.open(&batch, fields.len(), &mut buf);
        }
    });
    let ids: Vec<u64> = (0..u64::from(frames % 8)).collect();
    let _ = decode(rest, &ids, fields.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_fuzz_entry_point_reads_on_past_the_parse() {
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            dataset: "fuzz".into(),
            struct_name: "R".into(),
            fields: Vec::new(),
            frames: 1,
            frame_sha256: vec!["00".into()],
            records: Default::default(),
            tfhe: None,
            carried: Default::default(),
            seal: Some("zz".into()),
        };
        let bytes = serde_json::to_vec(&manifest).unwrap();
        assert!(parse_manifest(Path::new("m"), &bytes).is_ok());
        fuzz_manifest_bytes(&bytes);
        let mut odd = manifest;
        odd.seal = Some("0".repeat(200));
        fuzz_manifest_bytes(&serde_json::to_vec(&odd).unwrap());
        fuzz_manifest_bytes(b"{\"format\": 7}");
        fuzz_manifest_bytes(b"\xff");
    }
}
