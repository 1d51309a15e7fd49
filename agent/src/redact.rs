//! Redaction of values that look like secrets in command lines.
//!
//! Command lines are evidence (which tool read the token?) but sometimes carry
//! the credential itself: `kubectl --token=...`, `curl -H "Authorization:
//! Bearer eyJ..."`, `--password hunter2`, an inline PEM or its base64. Such
//! values are replaced by [`REDACTED`]; everything else is kept.

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Flag names (lowercase, without leading dashes) whose value is a secret,
/// matched as substrings; names ending in `file`, `path`, `dir` name a place,
/// not a secret, and are kept.
const SECRET_FLAG_WORDS: &[&str] = &[
    "token",
    "password",
    "passwd",
    "secret",
    "key-data",
    "api-key",
    "apikey",
    "credential",
];

fn is_secret_flag(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let place = ["file", "path", "dir", "stdin"]
        .iter()
        .any(|s| name.ends_with(s));
    !place && SECRET_FLAG_WORDS.iter().any(|w| name.contains(w))
}

/// A flag given without `=` takes the next argument as a secret only when
/// its name ends with a secret word (`--token`, `--client-secret`), not when
/// the word is a qualifier (`--token-ttl 1h`, `--token-stdin`).
fn takes_secret_value(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_FLAG_WORDS.iter().any(|w| name.ends_with(w))
}

/// Redacts a whole command line.
pub fn redact_cmdline(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut redact_next = false;
    for arg in args {
        if redact_next {
            out.push(REDACTED.to_string());
            redact_next = false;
            continue;
        }
        if let Some(flag) = arg.strip_prefix('-') {
            let flag = flag.trim_start_matches('-');
            match flag.split_once('=') {
                Some((name, _)) if is_secret_flag(name) => {
                    out.push(format!(
                        "{}={REDACTED}",
                        &arg[..arg.len() - flag.len() + name.len()]
                    ));
                    continue;
                }
                None if takes_secret_value(flag) => redact_next = true,
                _ => {}
            }
        }
        if arg.eq_ignore_ascii_case("bearer") {
            redact_next = true;
        }
        out.push(redact_value(arg));
    }
    out
}

/// Redacts secret-looking parts inside one string.
pub fn redact_value(s: &str) -> String {
    if s.contains("-----BEGIN") || s.contains("LS0tLS1CRUdJT") {
        // An inline PEM, or its base64 (`-----BEGIN` encodes to `LS0tLS1CRUdJT`).
        return REDACTED.to_string();
    }
    let s = redact_bearer(s);
    let s = redact_jwts(&s);
    redact_url_password(&s)
}

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'='
}

/// Replaces every `eyJ<b64url>.<b64url>.<b64url>?` run.
fn redact_jwts(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i..].starts_with(b"eyJ")
            && (i == 0
                || !(bytes[i - 1].is_ascii_alphanumeric()
                    || bytes[i - 1] == b'-'
                    || bytes[i - 1] == b'_'))
        {
            let mut j = i;
            let mut dots = 0;
            while j < bytes.len() && (is_b64url(bytes[j]) || (bytes[j] == b'.' && dots < 2)) {
                if bytes[j] == b'.' {
                    dots += 1;
                }
                j += 1;
            }
            if dots == 2 {
                out.push_str(REDACTED);
                i = j;
                continue;
            }
        }
        // Push one whole char (the input is UTF-8).
        let ch = s[i..].chars().next().unwrap_or('\u{fffd}');
        out.push(ch);
        i += ch.len_utf8().max(1);
    }
    out
}

/// `Bearer <x>` and `Basic <x>` (any case) -> `Bearer [REDACTED]`.
fn redact_bearer(s: &str) -> String {
    let lower = s.to_ascii_lowercase();
    for scheme in ["bearer ", "basic "] {
        if let Some(pos) = lower.find(scheme) {
            let start = pos + scheme.len();
            let rest = &s[start..];
            let value_len = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'')
                .unwrap_or(rest.len());
            if value_len > 0 {
                return format!(
                    "{}{REDACTED}{}",
                    &s[..start],
                    redact_bearer(&rest[value_len..])
                );
            }
        }
    }
    s.to_string()
}

/// `scheme://user:password@host` -> `scheme://user:[REDACTED]@host`.
fn redact_url_password(s: &str) -> String {
    let Some(scheme_end) = s.find("://") else {
        return s.to_string();
    };
    let auth_start = scheme_end + 3;
    let rest = &s[auth_start..];
    let host_end = rest.find('/').unwrap_or(rest.len());
    let Some(at) = rest[..host_end].rfind('@') else {
        return s.to_string();
    };
    let Some(colon) = rest[..at].find(':') else {
        return s.to_string();
    };
    format!(
        "{}{REDACTED}{}",
        &s[..auth_start + colon + 1],
        &s[auth_start + at..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(args: &[&str]) -> Vec<String> {
        redact_cmdline(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln-_";

    #[test]
    fn flags_with_secret_values() {
        assert_eq!(
            r(&["kubectl", "--token=abc", "get", "pods"]),
            ["kubectl", "--token=[REDACTED]", "get", "pods"]
        );
        assert_eq!(
            r(&["x", "--password", "hunter2", "y"]),
            ["x", "--password", REDACTED, "y"]
        );
        assert_eq!(
            r(&["x", "-client-key-data=QUJD"]),
            ["x", "-client-key-data=[REDACTED]"]
        );
        assert_eq!(
            r(&["x", "--token-file=/var/run/t"]),
            ["x", "--token-file=/var/run/t"]
        );
        assert_eq!(
            r(&["x", "--kubeconfig", "/root/.kube/config"]),
            ["x", "--kubeconfig", "/root/.kube/config"]
        );
    }

    #[test]
    fn qualifier_flags_do_not_take_secret_values() {
        assert_eq!(
            r(&["x", "--token-stdin", "get"]),
            ["x", "--token-stdin", "get"]
        );
        assert_eq!(r(&["x", "--token-ttl", "1h"]), ["x", "--token-ttl", "1h"]);
        assert_eq!(
            r(&["x", "--client-secret", "s"]),
            ["x", "--client-secret", REDACTED]
        );
        assert_eq!(r(&["x", "--token-ttl=1h"]), ["x", "--token-ttl=[REDACTED]"]);
    }

    #[test]
    fn secret_shaped_values() {
        assert_eq!(
            r(&[
                "curl",
                "-H",
                &format!("Authorization: Bearer {JWT}"),
                "https://k:6443"
            ]),
            [
                "curl",
                "-H",
                "Authorization: Bearer [REDACTED]",
                "https://k:6443"
            ]
        );
        assert_eq!(
            r(&["sh", "-c", &format!("echo {JWT} | x")]),
            ["sh", "-c", "echo [REDACTED] | x"]
        );
        assert_eq!(r(&[&format!("tok={JWT}")]), ["tok=[REDACTED]"]);
        assert_eq!(r(&["x", "Bearer", "opaque"]), ["x", "Bearer", REDACTED]);
        assert_eq!(
            r(&["x", "-----BEGIN PRIVATE KEY-----\nMII"]),
            ["x", REDACTED]
        );
        assert_eq!(r(&["x", "LS0tLS1CRUdJTiBDRVJU"]), ["x", REDACTED]);
        assert_eq!(
            r(&["git", "clone", "https://bob:s3cret@example.invalid/repo"]),
            [
                "git",
                "clone",
                "https://bob:[REDACTED]@example.invalid/repo"
            ]
        );
        // Not JWTs: kept.
        assert_eq!(r(&["eyJust.one"]), ["eyJust.one"]);
        assert_eq!(r(&["héllo eyJ"]), ["héllo eyJ"]);
    }
}
