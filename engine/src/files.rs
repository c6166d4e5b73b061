//! Files a job writes whole, and the digests its audit entries carry.

use anyhow::{Context, Result};

/// Writes `bytes` to `path` whole or not at all: a temporary file beside
/// it, then a rename.
pub fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".partial-{}", std::process::id()));
    let tmp = path.with_file_name(name);
    let written = std::fs::write(&tmp, bytes).and_then(|_| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.with_context(|| format!("cannot write {}", path.display()))
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
