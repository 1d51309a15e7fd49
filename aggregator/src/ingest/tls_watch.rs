//! TLS files that renew without a restart.
//!
//! cert-manager (or `deploy/tls/renew-webhook-client.sh`) replaces the
//! serving certificate, its key and the client CA bundle on disk long before
//! they expire. Each listener's `rustls::ServerConfig` is built once around a
//! [`TlsWatch`]: its certificate resolver ([`rustls::server::ResolvesServerCert`])
//! and client-certificate verifier ([`rustls::server::danger::ClientCertVerifier`])
//! read the *current* material, so live connections carry on and new
//! handshakes get the new certificate and CA.
//!
//! The files are looked at (read and hashed; they are small) at most every
//! [`check_interval`] (10 s by default, `--tls-reload-check`), on a
//! handshake or a `/metrics` scrape. A change is loaded whole (chain, key,
//! CA bundle) and checked (the key matches the certificate, the certificate
//! has not expired); a bad or half-written set keeps the previous material,
//! logs one line per distinct bad content and counts it in
//! `credtrail_tls_reload_failures_total{listener}`.
//! `credtrail_tls_cert_expiry_seconds{listener}` is the time left until the
//! serving certificate's (and, as `<listener>-client-ca`, the client CA's
//! earliest) notAfter.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use rustls::DistinguishedName;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use super::tls::{TlsError, certs, key};

/// Default for [`check_interval`].
pub const DEFAULT_CHECK: Duration = Duration::from_secs(10);

static CHECK_MS: AtomicU64 = AtomicU64::new(10_000);

/// How often the files are looked at (process-wide).
pub fn check_interval() -> Duration {
    Duration::from_millis(CHECK_MS.load(Ordering::Relaxed))
}

/// Sets [`check_interval`] (`--tls-reload-check`; tests).
pub fn set_check_interval(d: Duration) {
    CHECK_MS.store(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1),
        Ordering::Relaxed,
    );
}

/// Whether a client certificate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No client certificates.
    None,
    /// Verified when presented (bearer tokens still work).
    Optional,
    /// Required (the agent listener's mTLS).
    Required,
}

/// The files one listener serves from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// What one load produced.
#[derive(Debug)]
struct Loaded {
    certified: Arc<CertifiedKey>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    /// notAfter of the leaf, Unix seconds.
    not_after: i64,
    /// Earliest notAfter in the client CA bundle.
    ca_not_after: Option<i64>,
}

/// One listener's live TLS material.
#[derive(Debug)]
pub struct TlsWatch {
    listener: String,
    files: WatchedFiles,
    mode: ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
    /// Hash of the contents last looked at, and when.
    seen: Mutex<([u8; 32], Instant)>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

fn cert_not_after(der: &[u8]) -> Option<i64> {
    let (_, c) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(c.validity().not_after.timestamp())
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

fn read_all(f: &WatchedFiles) -> Result<Vec<Vec<u8>>, TlsError> {
    let read = |p: &PathBuf| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.clone(),
            source,
        })
    };
    let mut out = vec![read(&f.cert)?, read(&f.key)?];
    if let Some(ca) = &f.client_ca {
        out.push(read(ca)?);
    }
    Ok(out)
}

fn digest(parts: &[Vec<u8>]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    h.finalize().into()
}

impl TlsWatch {
    /// Loads the files now (an error names the file and what is wrong) and
    /// registers the watch for `/metrics`.
    pub fn new(
        listener: &str,
        files: WatchedFiles,
        mode: ClientAuth,
    ) -> Result<Arc<Self>, TlsError> {
        if mode != ClientAuth::None && files.client_ca.is_none() {
            return Err(TlsError::Rustls(format!(
                "{listener}: client certificates need a client CA file"
            )));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let parts = read_all(&files)?;
        let loaded = load(&files, mode, &provider)?;
        let w = Arc::new(Self {
            listener: listener.to_owned(),
            files,
            mode,
            provider,
            current: RwLock::new(Arc::new(loaded)),
            seen: Mutex::new((digest(&parts), Instant::now())),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        });
        register(&w);
        Ok(w)
    }

    /// A server configuration serving from this watch (`alpn`: the
    /// protocols offered).
    pub fn server_config(
        self: &Arc<Self>,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match self.mode {
            ClientAuth::None => builder.with_no_client_auth(),
            _ => builder.with_client_cert_verifier(Arc::new(Verifier(self.clone()))),
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(Resolver(self.clone())));
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(Arc::new(cfg))
    }

    fn current(&self) -> Arc<Loaded> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Looks at the files if [`check_interval`] has passed.
    pub fn check(&self) {
        self.check_every(check_interval());
    }

    /// Looks at the files now.
    pub fn check_now(&self) {
        self.check_every(Duration::ZERO);
    }

    fn check_every(&self, every: Duration) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !every.is_zero() && seen.1.elapsed() < every {
            return;
        }
        seen.1 = Instant::now();
        let parts = match read_all(&self.files) {
            Ok(p) => p,
            Err(e) => {
                // A missing file mid-swap: try again at the next check; count
                // it once per distinct state.
                let d = [0xff; 32];
                if seen.0 != d {
                    seen.0 = d;
                    self.fail(&e);
                }
                return;
            }
        };
        let d = digest(&parts);
        if d == seen.0 {
            return;
        }
        seen.0 = d;
        match load(&self.files, self.mode, &self.provider) {
            Ok(l) => {
                tracing::info!(
                    listener = %self.listener,
                    not_after = l.not_after,
                    "TLS files changed: new handshakes use the new certificate and CA"
                );
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(l);
                self.reloads.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => self.fail(&e),
        }
    }

    fn fail(&self, e: &TlsError) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            listener = %self.listener,
            error = %e,
            "TLS files changed but are not usable: keeping the previous certificate and CA"
        );
    }

    /// Reloads applied.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads refused (the previous material stayed).
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Seconds until the serving certificate's notAfter (negative: expired).
    pub fn expiry_seconds(&self) -> i64 {
        self.current().not_after - now_unix()
    }

    /// Seconds until the earliest client CA's notAfter.
    pub fn ca_expiry_seconds(&self) -> Option<i64> {
        self.current().ca_not_after.map(|t| t - now_unix())
    }

    pub fn listener(&self) -> &str {
        &self.listener
    }
}

fn load(
    f: &WatchedFiles,
    mode: ClientAuth,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Loaded, TlsError> {
    let chain = certs(&f.cert)?;
    let not_after = cert_not_after(&chain[0]).ok_or_else(|| TlsError::Pem {
        path: f.cert.clone(),
        what: "the certificate does not parse as X.509".into(),
    })?;
    if not_after < now_unix() {
        return Err(TlsError::Pem {
            path: f.cert.clone(),
            what: "the certificate has expired".into(),
        });
    }
    let signing = provider
        .key_provider
        .load_private_key(key(&f.key)?)
        .map_err(|e| TlsError::Pem {
            path: f.key.clone(),
            what: format!("unusable private key: {e}"),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    certified.keys_match().map_err(|_| TlsError::Pem {
        path: f.key.clone(),
        what: format!(
            "the key does not match the certificate {}",
            f.cert.display()
        ),
    })?;
    let (verifier, ca_not_after) = match (&f.client_ca, mode) {
        (Some(ca), ClientAuth::Optional | ClientAuth::Required) => {
            let mut roots = RootCertStore::empty();
            let mut earliest: Option<i64> = None;
            for c in certs(ca)? {
                if let Some(t) = cert_not_after(&c) {
                    earliest = Some(earliest.map_or(t, |e| e.min(t)));
                }
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("client CA {}: {e}", ca.display())))?;
            }
            let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let b = if mode == ClientAuth::Optional {
                b.allow_unauthenticated()
            } else {
                b
            };
            let v = b.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
            (Some(v), earliest)
        }
        _ => (None, None),
    };
    Ok(Loaded {
        certified: Arc::new(certified),
        verifier,
        not_after,
        ca_not_after,
    })
}

/// The certificate resolver: the current certificate.
#[derive(Debug)]
struct Resolver(Arc<TlsWatch>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.check();
        Some(self.0.current().certified.clone())
    }
}

/// The client-certificate verifier: the current CA bundle.
#[derive(Debug)]
struct Verifier(Arc<TlsWatch>);

impl Verifier {
    fn inner(&self) -> Result<Arc<dyn ClientCertVerifier>, rustls::Error> {
        self.0
            .current()
            .verifier
            .clone()
            .ok_or_else(|| rustls::Error::General("no client CA".into()))
    }
}

impl ClientCertVerifier for Verifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.0.mode == ClientAuth::Required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: during a CA overlap the bundle changes under a live
        // configuration, and clients (rustls, Go) send their one
        // certificate when no hint is given.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner()?
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0
            .provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Every live watch, for `/metrics` (weak: a dropped listener leaves).
static WATCHES: Mutex<Vec<Weak<TlsWatch>>> = Mutex::new(Vec::new());

fn register(w: &Arc<TlsWatch>) {
    let mut all = WATCHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    all.retain(|w| w.strong_count() > 0);
    all.push(Arc::downgrade(w));
}

/// One line of the TLS metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFigures {
    pub listener: String,
    pub expiry_seconds: i64,
    pub reload_failures: u64,
    pub reloads: u64,
}

/// The figures of every live watch (checking the files first), one per
/// listener name: the soonest expiry, summed counters. The client CA
/// bundles appear as `<listener>-client-ca`.
pub fn figures() -> Vec<TlsFigures> {
    let live: Vec<Arc<TlsWatch>> = WATCHES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .collect();
    let mut out: std::collections::BTreeMap<String, TlsFigures> = Default::default();
    let mut add = |name: String, exp: i64, fail: u64, rel: u64| {
        let e = out.entry(name.clone()).or_insert(TlsFigures {
            listener: name,
            expiry_seconds: exp,
            reload_failures: 0,
            reloads: 0,
        });
        e.expiry_seconds = e.expiry_seconds.min(exp);
        e.reload_failures += fail;
        e.reloads += rel;
    };
    for w in live {
        w.check();
        add(
            w.listener.clone(),
            w.expiry_seconds(),
            w.failures(),
            w.reloads(),
        );
        if let Some(ca) = w.ca_expiry_seconds() {
            add(format!("{}-client-ca", w.listener), ca, 0, 0);
        }
    }
    out.into_values().collect()
}
