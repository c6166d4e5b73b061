//! AES-256-GCM behind one trait, with two implementations: RustCrypto's
//! `aes-gcm` and `ring`. Both are measured side by side by
//! `benches/aes_lane.sh`; [`Backend::DEFAULT`] is the one the data chose
//! (README, "Benchmarks").

/// Bytes in a nonce.
pub const NONCE_LEN: usize = 12;
/// Bytes in an authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// An AEAD failure. It carries nothing: not the key, not the data, not
/// which check failed (rustls `DecryptError`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AeadError;

/// AES-256-GCM with detached tags, in place. One key per value.
pub trait Aes256GcmKey: Send + Sync {
    /// Encrypts `buf` in place and returns the tag. `nonce` must never be
    /// used twice with this key.
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN];
    /// Decrypts `buf` in place if `tag` authenticates it and `aad`.
    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError>;
}

/// Which implementation of AES-256-GCM to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// `ring` 0.17 (BoringSSL's assembly).
    Ring,
    /// RustCrypto `aes-gcm` 0.11.
    RustCrypto,
}

impl Backend {
    /// The backend the engine uses: `ring`, 2.7x RustCrypto's `aes-gcm`
    /// on this machine (7.8 against 2.9 GB/s sealing and opening 16 KiB,
    /// one core; `benches/aes_lane.sh`).
    pub const DEFAULT: Backend = Backend::Ring;

    /// Both, for benchmarks and tests.
    pub const ALL: [Backend; 2] = [Backend::Ring, Backend::RustCrypto];

    /// A short name, as `_meta.lane_impl` shows it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Ring => "ring",
            Backend::RustCrypto => "aes-gcm",
        }
    }

    /// A key of this backend.
    pub fn key(self, bytes: &[u8; KEY_LEN]) -> Box<dyn Aes256GcmKey> {
        match self {
            Backend::Ring => Box::new(RingKey::new(bytes)),
            Backend::RustCrypto => Box::new(RustCryptoKey::new(bytes)),
        }
    }
}

struct RingKey(ring::aead::LessSafeKey);

impl RingKey {
    fn new(bytes: &[u8; KEY_LEN]) -> RingKey {
        let key = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, bytes)
            .expect("AES-256 takes a 32-byte key");
        RingKey(ring::aead::LessSafeKey::new(key))
    }
}

impl Aes256GcmKey for RingKey {
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        let tag = self
            .0
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(*nonce),
                ring::aead::Aad::from(aad),
                buf,
            )
            .expect("the message is shorter than GCM's limit");
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        self.0
            .open_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(*nonce),
                ring::aead::Aad::from(aad),
                ring::aead::Tag::from(*tag),
                buf,
                0..,
            )
            .map(|_| ())
            .map_err(|_| AeadError)
    }
}

struct RustCryptoKey(aes_gcm::Aes256Gcm);

impl RustCryptoKey {
    fn new(bytes: &[u8; KEY_LEN]) -> RustCryptoKey {
        use aes_gcm::KeyInit;
        RustCryptoKey(
            aes_gcm::Aes256Gcm::new_from_slice(bytes).expect("AES-256 takes a 32-byte key"),
        )
    }
}

impl Aes256GcmKey for RustCryptoKey {
    fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut [u8]) -> [u8; TAG_LEN] {
        use aes_gcm::AeadInOut;
        let tag = self
            .0
            .encrypt_inout_detached(&(*nonce).into(), aad, buf.into())
            .expect("the message is shorter than GCM's limit");
        tag.into()
    }

    fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        use aes_gcm::AeadInOut;
        self.0
            .decrypt_inout_detached(&(*nonce).into(), aad, buf.into(), &(*tag).into())
            .map_err(|_| AeadError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST GCM test vector (gcmEncryptExtIV256.rsp, Count 0 with 128-bit
    /// plaintext): both backends agree with it and with each other.
    #[test]
    fn known_answer_and_agreement() {
        let key = [0u8; 32];
        let nonce = [0u8; 12];
        for backend in Backend::ALL {
            let k = backend.key(&key);
            let mut buf = [0u8; 16];
            let tag = k.seal(&nonce, b"", &mut buf);
            assert_eq!(hex(&buf), "cea7403d4d606b6e074ec5d3baf39d18", "{backend:?}");
            assert_eq!(hex(&tag), "d0d1c8a799996bf0265b98b5d48ab919", "{backend:?}");
            k.open(&nonce, b"", &mut buf, &tag).unwrap();
            assert_eq!(buf, [0u8; 16]);
        }
        let mut a = *b"the same message, two backends!";
        let mut b = a;
        let ta = Backend::Ring.key(&[7; 32]).seal(&[1; 12], b"aad", &mut a);
        let tb = Backend::RustCrypto
            .key(&[7; 32])
            .seal(&[1; 12], b"aad", &mut b);
        assert_eq!((a, ta), (b, tb));
        let mut c = a;
        c[3] ^= 1;
        for backend in Backend::ALL {
            let k = backend.key(&[7; 32]);
            assert_eq!(
                k.open(&[1; 12], b"aad", &mut c.clone(), &ta),
                Err(AeadError)
            );
            assert_eq!(
                k.open(&[1; 12], b"aaD", &mut a.clone(), &ta),
                Err(AeadError)
            );
        }
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
