//! A buffer for plaintext that must not outlive its use: zeroized when it
//! is cleared, regrown or dropped, and locked into RAM (`mlock`) where the
//! host permits, so it is never written to swap.

use zeroize::Zeroize;

/// Whether a [`LockedBuf`]'s memory is locked into RAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LockStatus {
    /// Nothing allocated yet.
    Empty,
    /// `mlock` succeeded.
    Locked,
    /// `mlock` failed; the reason (e.g. `RLIMIT_MEMLOCK` too low). The
    /// buffer is still zeroized.
    Unlocked(String),
}

/// A growable byte buffer that zeroizes and, where it can, locks its
/// memory. Growing allocates a new region and zeroizes the old one first.
pub struct LockedBuf {
    // Declared before `buf`: the pages are unlocked before they are freed.
    guard: Option<region::LockGuard>,
    buf: Vec<u8>,
    status: LockStatus,
}

impl std::fmt::Debug for LockedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockedBuf")
            .field("len", &self.buf.len())
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Default for LockedBuf {
    fn default() -> Self {
        LockedBuf::new()
    }
}

impl LockedBuf {
    /// An empty buffer (nothing allocated or locked yet).
    pub fn new() -> LockedBuf {
        LockedBuf {
            guard: None,
            buf: Vec::new(),
            status: LockStatus::Empty,
        }
    }

    /// Whether the memory is locked.
    pub fn status(&self) -> &LockStatus {
        &self.status
    }

    /// Replaces the contents with a copy of `bytes` and returns them,
    /// mutable (to be decrypted in place).
    pub fn fill(&mut self, bytes: &[u8]) -> &mut [u8] {
        self.clear();
        if self.buf.capacity() < bytes.len() {
            self.regrow(bytes.len().max(2 * self.buf.capacity()).max(4096));
        }
        self.buf.extend_from_slice(bytes);
        &mut self.buf
    }

    /// The contents.
    pub fn as_slice(&self) -> &[u8] {
        &self.buf
    }

    /// Zeroizes the contents; keeps (and keeps locked) the allocation.
    pub fn clear(&mut self) {
        self.buf.zeroize();
    }

    fn regrow(&mut self, capacity: usize) {
        self.guard = None;
        // `zeroize` on a Vec wipes its whole capacity, then it is freed.
        self.buf.zeroize();
        self.buf = Vec::with_capacity(capacity);
        match region::lock(self.buf.as_ptr(), capacity) {
            Ok(guard) => {
                self.guard = Some(guard);
                self.status = LockStatus::Locked;
            }
            Err(e) => self.status = LockStatus::Unlocked(e.to_string()),
        }
    }
}

impl Drop for LockedBuf {
    fn drop(&mut self) {
        self.buf.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_clears_and_grows() {
        let mut b = LockedBuf::new();
        assert_eq!(b.status(), &LockStatus::Empty);
        b.fill(b"secret");
        assert_eq!(b.as_slice(), b"secret");
        assert_ne!(b.status(), &LockStatus::Empty);
        b.clear();
        assert!(b.as_slice().is_empty());
        let big = vec![7u8; 100_000];
        assert_eq!(b.fill(&big).len(), 100_000);
        assert!(b.as_slice().iter().all(|&x| x == 7));
    }
}
