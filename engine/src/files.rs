//! Files a job writes whole, and the digests its audit entries carry.

use anyhow::{Context, Result};

/// Writes `bytes` to `path` whole or not at all: a new temporary file
/// beside it (created exclusively, so a file or link someone else put
/// there first is never written through), synced, then renamed over it.
/// A file that was there keeps its permissions.
pub fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let permissions = std::fs::metadata(path).ok().map(|m| m.permissions());
    let mut name = path.file_name().unwrap_or_default().to_owned();
    let nonce = getrandom::u64().map_err(|e| anyhow::anyhow!("the OS random source: {e}"))?;
    name.push(format!(".partial-{}-{nonce:016x}", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            if let Some(p) = permissions {
                file.set_permissions(p)?;
            }
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `bytes` to a new file at `path` (mode 0600; a file or link
/// there is never written through), synced.
pub fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Hex SHA-256 of a file, streamed.
pub fn file_digest(path: &std::path::Path) -> Result<String> {
    use sha2::Digest;
    use std::io::Read;
    let mut file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(symbiont_verify::hex(&hasher.finalize()))
}

/// Hex SHA-256 of bytes (the one the bundle's verifier computes too).
pub use symbiont_verify::digest;
