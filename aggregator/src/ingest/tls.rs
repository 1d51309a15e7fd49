//! TLS for the audit webhook: server certificate, optional client-CA for
//! client-certificate authentication; the agent listener's mTLS. All of them
//! reload their files when they change (`super::tls_watch`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::tls_watch::{ClientAuth, TlsWatch, WatchedFiles};

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Pem { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Rustls(String),
}

/// File paths of the webhook's TLS material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, client certificates signed by this CA authenticate the API server.
    pub client_ca: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("bad PEM certificate: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            what: "no certificate found".into(),
        });
    }
    Ok(certs)
}

pub(crate) fn key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            what: format!("bad PEM private key: {e}"),
        })?
        .ok_or_else(|| TlsError::Pem {
            path: path.to_path_buf(),
            what: "no private key found".into(),
        })
}

/// Builds the webhook's rustls server configuration (HTTP/1.1), reloading
/// its files when they change ([`super::tls_watch`]). With a client CA, a
/// client certificate is verified when presented but not required (bearer
/// tokens still work).
pub fn server_config(p: &TlsPaths) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    // HTTP/1.1 only: the webhook is served by the shared HTTP/1 loop
    // (`crate::listen`), whose header timeout covers every request.
    watch("webhook", p)?.server_config(&[b"http/1.1"])
}

/// The reloading TLS material of `listener` at `p` (client certificates
/// optional when `p.client_ca` is set).
pub fn watch(listener: &str, p: &TlsPaths) -> Result<Arc<TlsWatch>, TlsError> {
    let mode = if p.client_ca.is_some() {
        ClientAuth::Optional
    } else {
        ClientAuth::None
    };
    TlsWatch::new(
        listener,
        WatchedFiles {
            cert: p.cert.clone(),
            key: p.key.clone(),
            client_ca: p.client_ca.clone(),
        },
        mode,
    )
}

/// A rustls configuration that requires a client certificate chaining to
/// `client_ca` (the agent listener's mTLS), offering HTTP/2 only; reloads
/// its files when they change.
pub fn mtls_server_config(
    cert: &Path,
    key_path: &Path,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    TlsWatch::new(
        "agent",
        WatchedFiles {
            cert: cert.to_path_buf(),
            key: key_path.to_path_buf(),
            client_ca: Some(client_ca.to_path_buf()),
        },
        ClientAuth::Required,
    )?
    .server_config(&[b"h2"])
}
