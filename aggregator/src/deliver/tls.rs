//! TLS client side of the sinks: rustls with the sink's CA bundle, or the
//! system's (`/etc/ssl/certs/ca-certificates.crt`, Debian's ca-certificates).

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::ServerName;

use super::config::TlsSettings;

/// The system CA bundle used when a sink names no `ca_file`.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

fn roots(path: &Path) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("reading the CA bundle {}: {}", path.display(), e.kind()))?;
    let mut store = RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut pem.as_slice()) {
        let c = c.map_err(|e| format!("{}: bad PEM certificate: {e}", path.display()))?;
        store
            .add(c)
            .map_err(|e| format!("{}: unusable CA certificate: {e}", path.display()))?;
    }
    if store.is_empty() {
        return Err(format!("{}: no CA certificate found", path.display()));
    }
    Ok(store)
}

/// A connector verifying the receiver against the sink's CA (or the system's).
pub fn connector(t: &TlsSettings) -> Result<tokio_rustls::TlsConnector, String> {
    let path = t
        .ca_file
        .as_deref()
        .unwrap_or_else(|| Path::new(SYSTEM_CA_BUNDLE));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS configuration: {e}"))?
        .with_root_certificates(roots(path)?)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

/// The name to verify: the configured one, else the address's host.
pub fn server_name(t: &TlsSettings, host: &str) -> Result<ServerName<'static>, String> {
    let name = t.server_name.as_deref().unwrap_or(host);
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_owned())
        .map_err(|_| format!("{name:?} is not a valid TLS server name"))
}
