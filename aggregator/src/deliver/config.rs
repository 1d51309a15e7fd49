//! The outputs file (`serve --outputs FILE`, YAML): where new alerts are
//! pushed. Credentials-free: a sink's token, or a URL that embeds a secret
//! (Slack), is read from a file named here, and never appears in logs,
//! metrics or errors (those name the sink only).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Default per-sink queue length.
pub const DEFAULT_QUEUE: usize = 10_000;
/// Largest per-sink queue length accepted.
pub const MAX_QUEUE: usize = 1_000_000;
/// Sinks in one file.
pub const MAX_SINKS: usize = 32;

/// Errors of the outputs file; they name the file and the sink, never a secret.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {msg}")]
    Invalid { path: PathBuf, msg: String },
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    sinks: Vec<SinkFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkFile {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    /// syslog: `host:port`.
    #[serde(default)]
    address: Option<String>,
    /// syslog: TLS on (with `ca_file` or the system's CAs).
    #[serde(default)]
    tls: bool,
    /// TLS: the CA bundle (PEM) that signs the receiver's certificate.
    #[serde(default)]
    ca_file: Option<PathBuf>,
    /// TLS: the name to verify (default: the address's host).
    #[serde(default)]
    server_name: Option<String>,
    /// syslog: facility number (default 4, security/authorization).
    #[serde(default)]
    facility: Option<u8>,
    /// syslog: HOSTNAME field (default `credtrail-aggregator`).
    #[serde(default)]
    hostname: Option<String>,
    /// webhook: the URL (no secret in it) or a file holding it.
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    url_file: Option<PathBuf>,
    /// webhook: `json` (default), `slack`, `alertmanager`.
    #[serde(default)]
    body: Option<String>,
    /// webhook `json` body: `jsonl` (the API's alert JSON, default) or `ocsf`.
    #[serde(default)]
    format: Option<String>,
    /// webhook: a file holding the token sent as `Authorization: <scheme> <token>`.
    #[serde(default)]
    token_file: Option<PathBuf>,
    /// webhook: the scheme of that header (default `Bearer`; Splunk HEC: `Splunk`).
    #[serde(default)]
    auth_scheme: Option<String>,
    /// webhook alertmanager: where `generatorURL` points (default: the rule's runbook).
    #[serde(default)]
    generator_url: Option<String>,
    #[serde(default)]
    queue: Option<usize>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    backoff_initial: Option<String>,
    #[serde(default)]
    backoff_max: Option<String>,
}

/// TLS settings of a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
}

/// Webhook body shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// The alert as JSON (`format`: the API's JSON or OCSF).
    Json(crate::encode::Format),
    /// `{"text": ..., "blocks": [...]}`.
    Slack,
    /// Alertmanager v2 `POST /api/v2/alerts`: a one-element array.
    Alertmanager,
}

/// What a sink is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// RFC 5424 over TCP (RFC 6587 octet counting), CEF payload.
    Syslog {
        address: String,
        tls: Option<TlsSettings>,
        facility: u8,
        hostname: String,
    },
    Webhook {
        /// Secret when it came from `url_file`: never logged.
        url: String,
        body: Body,
        /// `Authorization` header value (secret).
        authorization: Option<String>,
        tls: TlsSettings,
        generator_url: Option<String>,
    },
}

/// Retry and queue bounds of a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub queue: usize,
    pub max_attempts: u32,
    pub timeout: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            queue: DEFAULT_QUEUE,
            max_attempts: 6,
            timeout: Duration::from_secs(10),
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
        }
    }
}

impl Bounds {
    /// The wait before attempt `n + 1` (`n` >= 1): doubling from the initial, capped.
    pub fn backoff(&self, failed_attempts: u32) -> Duration {
        let exp = failed_attempts.saturating_sub(1).min(20);
        self.backoff_initial
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max)
    }
}

/// One configured sink.
#[derive(Clone, PartialEq, Eq)]
pub struct Sink {
    pub name: String,
    pub kind: Kind,
    pub bounds: Bounds,
}

impl std::fmt::Debug for Sink {
    // Never print the URL or the authorization: they may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.kind {
            Kind::Syslog { address, tls, .. } => {
                format!("syslog {address} tls={}", tls.is_some())
            }
            Kind::Webhook { body, .. } => format!("webhook {body:?}"),
        };
        f.debug_struct("Sink")
            .field("name", &self.name)
            .field("kind", &kind)
            .field("bounds", &self.bounds)
            .finish()
    }
}

fn dur(v: &Option<String>, what: &str, default: Duration) -> Result<Duration, String> {
    match v {
        None => Ok(default),
        Some(s) => s
            .strip_suffix("ms")
            .and_then(|n| n.parse::<u64>().ok())
            .map(Duration::from_millis)
            .or_else(|| {
                crate::policy::parse_duration(s)
                    .ok()
                    .and_then(|d| d.to_std().ok())
            })
            .filter(|d| !d.is_zero() && *d <= Duration::from_secs(3600))
            .ok_or_else(|| {
                format!("{what} {s:?}: expected a duration such as 500ms, 10s (at most 1h)")
            }),
    }
}

fn read_secret(path: &Path, what: &str) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("{what}: reading {}: {}", path.display(), e.kind()))?;
    let v = text.trim();
    if v.is_empty() || v.contains(['\r', '\n']) {
        return Err(format!(
            "{what}: {} must hold one non-empty line",
            path.display()
        ));
    }
    Ok(v.to_owned())
}

fn sink(s: SinkFile) -> Result<Sink, String> {
    let name = s.name.clone();
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "sink name {name:?}: 1..=64 characters of [A-Za-z0-9._-]"
        ));
    }
    let err = |m: String| format!("sink {name:?}: {m}");
    let mut bounds = Bounds::default();
    if let Some(q) = s.queue {
        if q == 0 || q > MAX_QUEUE {
            return Err(err(format!("queue {q}: must be 1..={MAX_QUEUE}")));
        }
        bounds.queue = q;
    }
    if let Some(n) = s.max_attempts {
        if n == 0 || n > 100 {
            return Err(err(format!("max_attempts {n}: must be 1..=100")));
        }
        bounds.max_attempts = n;
    }
    bounds.timeout = dur(&s.timeout, "timeout", bounds.timeout).map_err(err)?;
    bounds.backoff_initial = dur(
        &s.backoff_initial,
        "backoff_initial",
        bounds.backoff_initial,
    )
    .map_err(err)?;
    bounds.backoff_max = dur(&s.backoff_max, "backoff_max", bounds.backoff_max).map_err(err)?;
    let tls = TlsSettings {
        ca_file: s.ca_file.clone(),
        server_name: s.server_name.clone(),
    };
    let kind = match s.kind.as_str() {
        "syslog" => {
            for (set, key) in [
                (s.url.is_some(), "url"),
                (s.url_file.is_some(), "url_file"),
                (s.body.is_some(), "body"),
                (s.token_file.is_some(), "token_file"),
                (s.format.is_some(), "format"),
            ] {
                if set {
                    return Err(err(format!("{key} is for webhooks, not syslog")));
                }
            }
            let address = s
                .address
                .clone()
                .ok_or_else(|| err("syslog needs address: host:port".into()))?;
            if address
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(err(format!("address {address:?}: expected host:port")));
            }
            let facility = s.facility.unwrap_or(4);
            if facility > 23 {
                return Err(err(format!("facility {facility}: must be 0..=23")));
            }
            let hostname = s
                .hostname
                .clone()
                .unwrap_or_else(|| "credtrail-aggregator".into());
            if hostname.is_empty()
                || hostname.len() > 255
                || !hostname.bytes().all(|b| (33..=126).contains(&b))
            {
                return Err(err(format!(
                    "hostname {hostname:?}: 1..=255 printable ASCII characters"
                )));
            }
            Kind::Syslog {
                address,
                tls: s.tls.then_some(tls),
                facility,
                hostname,
            }
        }
        "webhook" => {
            if s.address.is_some() || s.facility.is_some() || s.hostname.is_some() {
                return Err(err("address, facility and hostname are for syslog".into()));
            }
            let url = match (&s.url, &s.url_file) {
                (Some(u), None) => u.clone(),
                (None, Some(f)) => read_secret(f, "url_file").map_err(err)?,
                _ => return Err(err("webhook needs exactly one of url, url_file".into())),
            };
            let uri: hyper::Uri = url.parse().map_err(|_| {
                err("the URL does not parse (http:// or https://host[:port]/path)".into())
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(err("the URL must be http:// or https:// with a host".into()));
            }
            let format = match s.format.as_deref() {
                None | Some("jsonl") => crate::encode::Format::Jsonl,
                Some("ocsf") => crate::encode::Format::Ocsf,
                Some(other) => {
                    return Err(err(format!("format {other:?}: expected jsonl or ocsf")));
                }
            };
            let body = match s.body.as_deref() {
                None | Some("json") => Body::Json(format),
                Some("slack") => Body::Slack,
                Some("alertmanager") => Body::Alertmanager,
                Some(other) => {
                    return Err(err(format!(
                        "body {other:?}: expected json, slack or alertmanager"
                    )));
                }
            };
            let scheme = s.auth_scheme.clone().unwrap_or_else(|| "Bearer".into());
            if scheme.is_empty()
                || !scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return Err(err(format!("auth_scheme {scheme:?}: one word")));
            }
            let authorization = s
                .token_file
                .as_ref()
                .map(|f| read_secret(f, "token_file").map(|t| format!("{scheme} {t}")))
                .transpose()
                .map_err(err)?;
            if let Some(a) = &authorization
                && hyper::header::HeaderValue::from_str(a).is_err()
            {
                return Err(err(
                    "token_file: the token is not a valid header value".into()
                ));
            }
            Kind::Webhook {
                url,
                body,
                authorization,
                tls,
                generator_url: s.generator_url.clone(),
            }
        }
        other => return Err(err(format!("type {other:?}: expected syslog or webhook"))),
    };
    Ok(Sink { name, kind, bounds })
}

/// Parses an outputs file's text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<Vec<Sink>, ConfigError> {
    let invalid = |msg: String| ConfigError::Invalid {
        path: path.to_path_buf(),
        msg,
    };
    let f: File = serde_norway::from_str(text).map_err(|e| invalid(e.to_string()))?;
    if f.sinks.len() > MAX_SINKS {
        return Err(invalid(format!("at most {MAX_SINKS} sinks")));
    }
    let mut out: Vec<Sink> = Vec::new();
    for s in f.sinks {
        let s = sink(s).map_err(invalid)?;
        if out.iter().any(|o| o.name == s.name) {
            return Err(invalid(format!("sink {:?} is named twice", s.name)));
        }
        out.push(s);
    }
    Ok(out)
}

/// Reads and parses an outputs file.
pub fn load(path: &Path) -> Result<Vec<Sink>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_and_never_show_in_debug_or_errors() {
        let dir = tempfile::tempdir().unwrap();
        let tok = dir.path().join("tok");
        std::fs::write(&tok, "s3cret-token\n").unwrap();
        let url = dir.path().join("url");
        std::fs::write(
            &url,
            "https://hooks.example.invalid/services/T/B/s3cret-path\n",
        )
        .unwrap();
        let text = format!(
            "sinks:\n- name: slack\n  type: webhook\n  body: slack\n  url_file: {}\n  token_file: {}\n",
            url.display(),
            tok.display()
        );
        let sinks = parse(Path::new("o.yaml"), &text).unwrap();
        let dbg = format!("{sinks:?}");
        assert!(!dbg.contains("s3cret"), "{dbg}");
        match &sinks[0].kind {
            Kind::Webhook { authorization, .. } => {
                assert_eq!(authorization.as_deref(), Some("Bearer s3cret-token"));
            }
            Kind::Syslog { .. } => panic!("not a webhook"),
        }
        // A bad secret file is named, its content never shown.
        std::fs::write(&tok, "two\nlines-s3cret\n").unwrap();
        let e = parse(Path::new("o.yaml"), &text).unwrap_err().to_string();
        assert!(e.contains("token_file") && !e.contains("s3cret"), "{e}");
    }

    #[test]
    fn bad_sinks_are_refused_with_their_name() {
        for (text, want) in [
            ("sinks:\n- {name: a, type: syslog}\n", "needs address"),
            (
                "sinks:\n- {name: a, type: syslog, address: 'x:notaport'}\n",
                "host:port",
            ),
            (
                "sinks:\n- {name: a, type: ftp}\n",
                "expected syslog or webhook",
            ),
            (
                "sinks:\n- {name: a, type: webhook, url: 'ftp://x/'}\n",
                "http://",
            ),
            (
                "sinks:\n- {name: a, type: webhook, url: 'http://x/', body: xml}\n",
                "body",
            ),
            (
                "sinks:\n- {name: a, type: webhook, url: 'http://x/', queue: 0}\n",
                "queue",
            ),
            (
                "sinks:\n- {name: 'a b', type: webhook, url: 'http://x/'}\n",
                "sink name",
            ),
            (
                "sinks:\n- {name: a, type: webhook, url: 'http://x/', bogus: 1}\n",
                "bogus",
            ),
            (
                "sinks:\n- {name: a, type: webhook, url: 'http://x/'}\n- {name: a, type: webhook, url: 'http://y/'}\n",
                "named twice",
            ),
        ] {
            let e = parse(Path::new("o.yaml"), text).unwrap_err().to_string();
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let b = Bounds {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            ..Bounds::default()
        };
        assert_eq!(b.backoff(1), Duration::from_millis(100));
        assert_eq!(b.backoff(2), Duration::from_millis(200));
        assert_eq!(b.backoff(3), Duration::from_millis(350));
        assert_eq!(b.backoff(99), Duration::from_millis(350));
    }
}
