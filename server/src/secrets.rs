//! Password encryption at rest (AES-256-GCM) and the redacting [`Password`] type.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, OsRng};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the secret key must be base64 of exactly 32 bytes")]
    BadKey,
    #[error("reading or writing the key file {path}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("stored ciphertext is malformed")]
    Malformed,
    #[error("decryption failed (wrong key or tampered ciphertext)")]
    Decrypt,
    #[error("encryption failed")]
    Encrypt,
}

/// A password: `Debug`/`Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a plaintext password.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The plaintext, for handing to PostgreSQL through the environment or a 0600 file.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Encrypts and decrypts stored passwords.
#[derive(Clone)]
pub struct Cipher {
    cipher: Aes256Gcm,
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cipher(***)")
    }
}

impl Cipher {
    /// From base64 of a 32-byte key.
    pub fn from_base64(key: &str) -> Result<Self, Error> {
        let bytes = B64.decode(key.trim()).map_err(|_| Error::BadKey)?;
        if bytes.len() != 32 {
            return Err(Error::BadKey);
        }
        Ok(Self {
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&bytes)),
        })
    }

    /// Loads the key file, creating it (0600, 32 random bytes) if it does not exist.
    pub fn load_or_create_key_file(path: &Path) -> Result<Self, Error> {
        let io_err = |source| Error::KeyFile {
            path: path.display().to_string(),
            source,
        };
        match std::fs::read_to_string(path) {
            Ok(s) => Self::from_base64(&s),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Aes256Gcm::generate_key(OsRng);
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io_err)?;
                f.write_all(B64.encode(key).as_bytes()).map_err(io_err)?;
                f.sync_all().map_err(io_err)?;
                Ok(Self {
                    cipher: Aes256Gcm::new(&key),
                })
            }
            Err(e) => Err(io_err(e)),
        }
    }

    /// Encrypts a password: base64 of a fresh 96-bit nonce followed by the ciphertext and tag.
    pub fn encrypt(&self, password: &Password) -> Result<String, Error> {
        let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
        let ct = self
            .cipher
            .encrypt(&nonce, password.expose().as_bytes())
            .map_err(|_| Error::Encrypt)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    /// Decrypts what [`Cipher::encrypt`] produced.
    pub fn decrypt(&self, stored: &str) -> Result<Password, Error> {
        let bytes = B64.decode(stored).map_err(|_| Error::Malformed)?;
        if bytes.len() < 12 + 16 {
            return Err(Error::Malformed);
        }
        let (nonce, ct) = bytes.split_at(12);
        let pt = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| Error::Decrypt)?;
        String::from_utf8(pt)
            .map(Password)
            .map_err(|_| Error::Malformed)
    }
}

/// A random URL-safe token of `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    use rand::RngCore;
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cipher::load_or_create_key_file(&dir.path().join("k")).unwrap();
        let p = Password::new("s3cret-passw0rd");
        let enc = c.encrypt(&p).unwrap();
        assert!(!enc.contains("s3cret"));
        assert_ne!(enc, c.encrypt(&p).unwrap(), "nonces must differ");
        assert_eq!(c.decrypt(&enc).unwrap(), p);
        // Same key file reloads to the same key.
        let c2 = Cipher::load_or_create_key_file(&dir.path().join("k")).unwrap();
        assert_eq!(c2.decrypt(&enc).unwrap(), p);
        // Tampering is detected.
        let mut raw = B64.decode(&enc).unwrap();
        raw[20] ^= 1;
        assert!(matches!(c.decrypt(&B64.encode(raw)), Err(Error::Decrypt)));
        assert_eq!(format!("{p:?}"), "Password(***)");
    }
}
