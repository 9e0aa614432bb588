//! Secret keys on disk: the issuer's key, each sentinel's attestation key.
//!
//! A key file holds the 32-byte ed25519 seed as 64 lower-case hex digits and a newline,
//! and is created readable by its owner only (mode 0600) and never overwritten, so that
//! a second `init` cannot silently replace a key that money depends on.

use std::path::{Path, PathBuf};

use crate::keys::SecretKey;

/// Why a key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be created, written or read (it exists already, a directory is
    /// missing, permissions…).
    #[error("{path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file does not hold exactly 64 hex digits.
    #[error("{path} does not hold a 64-hex-digit ed25519 seed")]
    Malformed {
        /// The key file.
        path: PathBuf,
    },
}

/// Writes `key` to a new file at `path` (mode 0600); fails if the file exists.
pub fn write_key_file(path: &Path, key: &SecretKey) -> Result<(), KeyFileError> {
    let io = |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io)?;
    let text = format!("{}\n", hex::encode(key.to_bytes()));
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)
}

/// Reads a key written by [`write_key_file`].
pub fn read_key_file(path: &Path) -> Result<SecretKey, KeyFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyFileError::Malformed {
        path: path.to_path_buf(),
    })?;
    Ok(SecretKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_refuses_overwrite_and_rejects_garbage() {
        let dir = std::env::temp_dir().join(format!("cbdc-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("k.key");
        let _ = std::fs::remove_file(&path);
        let key = SecretKey::from_bytes(&[7u8; 32]);
        write_key_file(&path, &key).unwrap();
        assert_eq!(read_key_file(&path).unwrap().to_bytes(), key.to_bytes());
        assert!(matches!(
            write_key_file(&path, &key),
            Err(KeyFileError::Io { .. })
        ));
        std::fs::write(&path, "not hex").unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(KeyFileError::Malformed { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
