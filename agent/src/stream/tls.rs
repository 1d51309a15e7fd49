//! The stream's TLS files, re-read when they change.
//!
//! cert-manager (or the kubelet, for a projected certificate) replaces the
//! agent's client certificate, key and the aggregator's CA bundle before they
//! expire. Before every connection attempt the three files are read and
//! hashed (they are small); a change is checked (PEM parses, the key matches
//! the certificate, the certificate has not expired) and used for this and
//! later connections. A live stream carries on with the session it has. A
//! bad set keeps the previous one, logs one line per distinct bad content
//! and is counted in [`super::StreamStatus::tls_reload_failures`].

use std::path::Path;
use std::sync::Arc;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use super::{StreamConfig, StreamError};

/// What one load produced.
pub(crate) struct Loaded {
    pub tls: ClientTlsConfig,
    /// notAfter of the client certificate, Unix seconds.
    pub not_after: i64,
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, StreamError> {
    std::fs::read(path).map_err(|source| StreamError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad(what: &'static str, path: &Path, why: impl std::fmt::Display) -> StreamError {
    StreamError::Tls {
        what,
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Hash of the three files' contents, or why one cannot be read.
pub(crate) fn fingerprint(cfg: &StreamConfig) -> Result<[u8; 32], StreamError> {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    let mut files = vec![("CA certificate", &cfg.ca)];
    if has_client_cert(cfg) {
        files.push(("client certificate", &cfg.cert));
        files.push(("client key", &cfg.key));
    }
    for (what, p) in files {
        let b = read(what, p)?;
        h.update((b.len() as u64).to_le_bytes());
        h.update(&b);
    }
    Ok(h.finalize().into())
}

/// Whether the agent presents a client certificate (not with a token only).
pub(crate) fn has_client_cert(cfg: &StreamConfig) -> bool {
    !cfg.cert.as_os_str().is_empty()
}

/// The token to present, read now (the kubelet rewrites it as it rotates).
pub(crate) fn token(cfg: &StreamConfig) -> Result<Option<String>, StreamError> {
    let Some(p) = &cfg.token_file else {
        return Ok(None);
    };
    let b = read("service-account token", p)?;
    let t = String::from_utf8(b)
        .map_err(|_| bad("service-account token", p, "not UTF-8"))?
        .trim()
        .to_owned();
    if t.is_empty() || t.len() > 16 * 1024 || t.bytes().any(|c| !c.is_ascii_graphic()) {
        return Err(bad(
            "service-account token",
            p,
            "not a token (empty, too long or not printable)",
        ));
    }
    Ok(Some(t))
}

/// Reads and checks the files; the TLS configuration for tonic.
pub(crate) fn load(cfg: &StreamConfig) -> Result<Loaded, StreamError> {
    let ca = read("CA certificate", &cfg.ca)?;
    if !has_client_cert(cfg) {
        let ca_certs: Vec<_> = rustls_pemfile::certs(&mut ca.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| bad("CA certificate", &cfg.ca, e))?;
        if ca_certs.is_empty() {
            return Err(bad("CA certificate", &cfg.ca, "no certificate found"));
        }
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(name) = &cfg.server_name {
            tls = tls.domain_name(name.clone());
        }
        return Ok(Loaded {
            tls,
            not_after: i64::MAX,
        });
    }
    let cert = read("client certificate", &cfg.cert)?;
    let key = read("client key", &cfg.key)?;
    let ca_certs: Vec<_> = rustls_pemfile::certs(&mut ca.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("CA certificate", &cfg.ca, e))?;
    if ca_certs.is_empty() {
        return Err(bad("CA certificate", &cfg.ca, "no certificate found"));
    }
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| bad("client certificate", &cfg.cert, e))?;
    let leaf = chain
        .first()
        .ok_or_else(|| bad("client certificate", &cfg.cert, "no certificate found"))?;
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map(|(_, c)| c.validity().not_after.timestamp())
        .map_err(|e| bad("client certificate", &cfg.cert, e))?;
    if not_after < chrono::Utc::now().timestamp() {
        return Err(bad("client certificate", &cfg.cert, "it has expired"));
    }
    let pk = rustls_pemfile::private_key(&mut key.as_slice())
        .map_err(|e| bad("client key", &cfg.key, e))?
        .ok_or_else(|| bad("client key", &cfg.key, "no private key found"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let signing = provider
        .key_provider
        .load_private_key(pk)
        .map_err(|e| bad("client key", &cfg.key, e))?;
    rustls::sign::CertifiedKey::new(chain, signing)
        .keys_match()
        .map_err(|_| {
            bad(
                "client key",
                &cfg.key,
                "it does not match the client certificate",
            )
        })?;
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .identity(Identity::from_pem(cert, key));
    if let Some(name) = &cfg.server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(Loaded { tls, not_after })
}
