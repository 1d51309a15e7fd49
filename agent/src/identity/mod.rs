//! Credential identity without the secret: what a credential file holds,
//! described by claims and fingerprints only.
//!
//! [`identify`] sniffs the content (PEM, JWT, kubeconfig YAML), with the path
//! as a hint for the error message when nothing fits. The caller reads the
//! bytes with [`read_capped`], passes them here and wipes them; nothing in the
//! returned [`CredentialIdentity`] can be turned back into the secret.

pub mod cache;
pub mod jwt;
pub mod kubeconfig;
pub mod rootfs;
pub mod x509;

use std::io::Read as _;
use std::path::Path;

use credtrail_proto::model::{CredentialIdentity, CredentialKind};
use sha2::{Digest as _, Sha256};

pub use cache::{FileKey, IdentityCache};
pub use kubeconfig::{NoRefs, RefReader};

/// Largest credential file the agent reads (kubeconfigs with many embedded
/// certificates stay well below this).
pub const MAX_CREDENTIAL_BYTES: u64 = 1 << 20;

/// Why a credential file could not be read. Errors name the file and the
/// kind of problem, never content.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Root(#[from] rootfs::RootError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: crate::pool::PoolError,
    },
}

impl ReadError {
    /// The credential kind to report for this error: `not_a_regular_file`
    /// for a FIFO, device, socket or directory, else `None`.
    pub fn kind(&self) -> Option<CredentialKind> {
        matches!(self, Self::Root(rootfs::RootError::NotRegular { .. }))
            .then_some(CredentialKind::NotARegularFile)
    }
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Reads at most `max` bytes of a file of the agent's own file system (the
/// start-up scan); larger files are refused, not cut, and anything but a
/// regular file is refused unopened for reading (see [`rootfs`]).
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadError> {
    let shown = path.display().to_string();
    let opened = rootfs::open_in_root(Path::new("/"), &shown)?;
    read_capped_file(opened.file, &shown, max)
}

/// [`read_capped`] on an open file; `shown` names it in errors.
pub fn read_capped_file(file: std::fs::File, shown: &str, max: u64) -> Result<Vec<u8>, ReadError> {
    let mut buf = Vec::new();
    file.take(max + 1)
        .read_to_end(&mut buf)
        .map_err(|source| ReadError::Read {
            path: shown.to_string(),
            source,
        })?;
    if buf.len() as u64 > max {
        wipe(&mut buf);
        return Err(ReadError::TooLarge {
            path: shown.to_string(),
            max,
        });
    }
    Ok(buf)
}

/// Overwrites secret bytes before they are freed (best effort).
pub fn wipe(buf: &mut Vec<u8>) {
    for b in buf.iter_mut() {
        // black_box keeps the stores from being optimised away.
        *std::hint::black_box(b) = 0;
    }
    buf.clear();
}

/// What the path suggests the file should hold.
fn expected_kind(path: &str) -> CredentialKind {
    let name = path.rsplit('/').next().unwrap_or(path);
    if name == "token" {
        CredentialKind::ServiceAccountToken
    } else if name.ends_with(".pem") || name.ends_with(".crt") {
        CredentialKind::ClientCertificate
    } else if name.ends_with(".key") {
        CredentialKind::PrivateKey
    } else {
        CredentialKind::Kubeconfig
    }
}

/// Identifies credential content. Never fails: what could not be identified
/// is said in `error`, with the content's fingerprint still given.
pub fn identify(path: &str, bytes: &[u8], refs: &dyn RefReader) -> CredentialIdentity {
    let mut id = CredentialIdentity {
        sha256: Some(sha256_hex(bytes)),
        ..Default::default()
    };
    if bytes.trim_ascii().is_empty() {
        id.kind = expected_kind(path);
        id.error = Some("file is empty".into());
        return id;
    }
    if x509::looks_like_pem(bytes) {
        match x509::parse_pem(bytes) {
            Ok(pem) if !pem.certs.is_empty() => {
                id.kind = CredentialKind::ClientCertificate;
                match x509::cert_identity(&pem.certs[0]) {
                    Ok(c) => id.certificate = Some(c),
                    Err(e) => id.error = Some(e.to_string()),
                }
            }
            Ok(_) => id.kind = CredentialKind::PrivateKey,
            Err(e) => {
                id.kind = expected_kind(path);
                id.error = Some(e.to_string());
            }
        }
        return id;
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        id.kind = expected_kind(path);
        id.error = Some("content is neither PEM nor UTF-8 text".into());
        return id;
    };
    let trimmed = text.trim();
    if jwt::looks_like_jwt(trimmed) || expected_kind(path) == CredentialKind::ServiceAccountToken {
        // A token file: fingerprint the trimmed token, as the API server sees it.
        let (token, err) = jwt::token_identity(trimmed);
        id.kind = CredentialKind::ServiceAccountToken;
        id.sha256 = Some(token.sha256.clone());
        id.token = Some(token);
        id.error = err.map(|e| e.to_string());
        return id;
    }
    match kubeconfig::kubeconfig_identity(text, refs) {
        Ok(k) => {
            id.kind = CredentialKind::Kubeconfig;
            id.kubeconfig = Some(k);
        }
        Err(e) => {
            id.kind = CredentialKind::Unknown;
            id.error = Some(e.to_string());
        }
    }
    id
}

#[cfg(test)]
#[path = "identity_tests.rs"]
pub(crate) mod identity_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_sniffed_from_content() {
        let key = rcgen::KeyPair::generate().unwrap();
        let id = identify("/x/tls.key", key.serialize_pem().as_bytes(), &NoRefs);
        assert_eq!(id.kind, CredentialKind::PrivateKey);
        assert_eq!(id.sha256, Some(sha256_hex(key.serialize_pem().as_bytes())));
        assert_eq!(id.error, None);

        let id = identify("/t/token", b"", &NoRefs);
        assert_eq!(id.kind, CredentialKind::ServiceAccountToken);
        assert_eq!(id.error.as_deref(), Some("file is empty"));

        let id = identify("/t/token", b"opaque\n", &NoRefs);
        assert_eq!(id.kind, CredentialKind::ServiceAccountToken);
        assert_eq!(id.sha256, Some(sha256_hex(b"opaque")));
        assert!(id.error.unwrap().contains("not a JWT"));

        let id = identify("/etc/kubernetes/admin.conf", b"\xff\xfe", &NoRefs);
        assert_eq!(id.kind, CredentialKind::Kubeconfig);
        assert_eq!(
            id.error.as_deref(),
            Some("content is neither PEM nor UTF-8 text")
        );

        let id = identify("/etc/kubernetes/admin.conf", b"just: [text", &NoRefs);
        assert_eq!(id.kind, CredentialKind::Unknown);
        assert!(
            id.error
                .unwrap()
                .starts_with("kubeconfig is not valid YAML")
        );
    }

    #[test]
    fn read_capped_refuses_large_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big");
        std::fs::write(&p, vec![b'a'; 11]).unwrap();
        assert_eq!(read_capped(&p, 11).unwrap().len(), 11);
        let e = read_capped(&p, 10).unwrap_err();
        assert!(e.to_string().ends_with("is larger than 10 bytes"), "{e}");
        let e = read_capped(&dir.path().join("none"), 10).unwrap_err();
        assert!(e.to_string().starts_with("cannot open"), "{e}");
    }
}
