//! Sealing of secrets at rest: session join tokens are stored only as AES-256-GCM
//! ciphertext, a fresh random 96-bit nonce per value. A blob is `version (1) | nonce (12) |
//! ciphertext+tag`; the version byte lets the format or key change later.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;

const VERSION: u8 = 1;
const NONCE_BYTES: usize = 12;

/// Why a key or a blob was refused. Never carries key or plaintext bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error("the sealing key must be 32 bytes, base64-encoded")]
    BadKey,
    #[error("sealed value is malformed or was sealed with another key")]
    Open,
}

/// AES-256-GCM with one key. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key redacted>)")
    }
}

impl Sealer {
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
        }
    }

    /// A key given as standard base64 of 32 bytes (e.g. `openssl rand -base64 32`).
    pub fn from_base64(key: &str) -> Result<Self, SealError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(key.trim())
            .map_err(|_| SealError::BadKey)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| SealError::BadKey)?;
        Ok(Self::new(&key))
    }

    pub fn seal(&self, plaintext: &[u8]) -> Vec<u8> {
        let nonce: [u8; NONCE_BYTES] = rand::random();
        let ciphertext = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut blob = Vec::with_capacity(1 + NONCE_BYTES + ciphertext.len());
        blob.push(VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&ciphertext);
        blob
    }

    pub fn open(&self, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        if blob.len() < 1 + NONCE_BYTES || blob[0] != VERSION {
            return Err(SealError::Open);
        }
        let (nonce, ciphertext) = blob[1..].split_at(NONCE_BYTES);
        self.cipher
            .decrypt(Nonce::from_slice(nonce), ciphertext)
            .map_err(|_| SealError::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_only_and_never_shows_the_plaintext() {
        let sealer = Sealer::new(&[7; 32]);
        let secret = b"eyJhbGciOiJSUzI1NiJ9.payload.signature";
        let a = sealer.seal(secret);
        let b = sealer.seal(secret);
        assert_ne!(a, b, "a fresh nonce per value");
        assert!(!a.windows(8).any(|w| secret.windows(8).any(|s| s == w)));
        assert_eq!(sealer.open(&a).unwrap(), secret);
        assert_eq!(Sealer::new(&[8; 32]).open(&a), Err(SealError::Open));
        let mut tampered = a.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(sealer.open(&tampered), Err(SealError::Open));
        assert_eq!(sealer.open(&a[..5]), Err(SealError::Open));
    }

    #[test]
    fn keys_are_32_bytes_of_base64() {
        assert!(Sealer::from_base64("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_ok());
        assert_eq!(
            Sealer::from_base64("c2hvcnQ=").unwrap_err(),
            SealError::BadKey
        );
        assert_eq!(
            Sealer::from_base64("not base64!").unwrap_err(),
            SealError::BadKey
        );
    }
}
