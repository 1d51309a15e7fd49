//! The API token file: one token per line, `<name> <role> sha256:<hex>`
//! (`#` starts a comment). Only the SHA-256 of each token is stored — in the
//! file and in memory — so the file is not itself a credential. A presented
//! token is hashed and compared with every entry in constant time.
//!
//! `credtrail-aggregator api-token --name alice --role responder --append FILE`
//! makes a token, appends its line and prints the token once.

use std::path::Path;

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::Role;

/// Most entries a token file may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest name.
pub const MAX_NAME: usize = 128;

/// One accepted token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenEntry {
    pub name: String,
    pub role: Role,
    hash: [u8; 32],
}

/// Why a token file is refused; names the line, never a token.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}:{line}: {what}")]
    Line {
        origin: String,
        line: usize,
        what: String,
    },
    #[error("{origin}: more than {MAX_ENTRIES} tokens")]
    TooMany { origin: String },
}

/// The parsed file.
#[derive(Debug, Clone, Default)]
pub struct TokenFile {
    entries: Vec<TokenEntry>,
}

/// SHA-256 of a token.
pub fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new random token (32 bytes from the OS, URL-safe base64, 43 characters).
pub fn generate() -> Result<String, ring::error::Unspecified> {
    use base64::Engine as _;
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 32];
    ring::rand::SystemRandom::new().fill(&mut b)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b))
}

/// The file line for `token`.
pub fn line(name: &str, role: Role, token: &str) -> String {
    format!("{name} {role} sha256:{}", hex::encode(hash(token)))
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&p, &text)
    }

    pub fn parse(origin: &str, text: &str) -> Result<Self, TokenFileError> {
        let mut entries: Vec<TokenEntry> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let bad = |what: String| TokenFileError::Line {
                origin: origin.to_owned(),
                line: i + 1,
                what,
            };
            let l = raw.split('#').next().unwrap_or("").trim();
            if l.is_empty() {
                continue;
            }
            let fields: Vec<&str> = l.split_whitespace().collect();
            let [name, role, digest] = fields.as_slice() else {
                return Err(bad(format!(
                    "expected `<name> <role> sha256:<hex>`, found {} fields",
                    fields.len()
                )));
            };
            if name.len() > MAX_NAME
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.@:".contains(c))
            {
                return Err(bad(format!(
                    "name must be 1..={MAX_NAME} of [A-Za-z0-9-_.@:]"
                )));
            }
            let role = Role::parse(role)
                .ok_or_else(|| bad(format!("role {role:?} is not viewer, responder or admin")))?;
            let hex_digest = digest.strip_prefix("sha256:").ok_or_else(|| {
                bad(
                    "the third field must be sha256:<64 hex digits> (the hash, never the token)"
                        .into(),
                )
            })?;
            let mut h = [0u8; 32];
            hex::decode_to_slice(hex_digest, &mut h)
                .map_err(|_| bad("sha256: needs exactly 64 hex digits".into()))?;
            if entries.iter().any(|e| e.name == *name) {
                return Err(bad(format!("name {name:?} appears twice")));
            }
            if entries.iter().any(|e| e.hash == h) {
                return Err(bad("the same token appears twice".into()));
            }
            if entries.len() >= MAX_ENTRIES {
                return Err(TokenFileError::TooMany {
                    origin: origin.to_owned(),
                });
            }
            entries.push(TokenEntry {
                name: (*name).to_owned(),
                role,
                hash: h,
            });
        }
        Ok(Self { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry whose hash is `token`'s. Every entry is compared in full,
    /// in constant time, whether or not an earlier one matched.
    pub fn find(&self, token: &str) -> Option<&TokenEntry> {
        let h = hash(token);
        let mut found: Option<&TokenEntry> = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&h)) {
                found = Some(e);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_finds_and_names_bad_lines() {
        let t = generate().unwrap();
        assert_eq!(t.len(), 43);
        let text = format!(
            "# SOC tokens\n{}\n\n{}  # ci\n",
            line("alice", Role::Responder, &t),
            line("ci-bot", Role::Viewer, "other-token")
        );
        let f = TokenFile::parse("tokens", &text).unwrap();
        assert_eq!(f.len(), 2);
        let e = f.find(&t).unwrap();
        assert_eq!((e.name.as_str(), e.role), ("alice", Role::Responder));
        assert_eq!(f.find("other-token").unwrap().role, Role::Viewer);
        assert!(f.find("nope").is_none());
        assert!(f.find("").is_none());
        // The file holds no token.
        assert!(!text.contains(&t));

        for (bad, want) in [
            ("alice viewer", "expected"),
            ("alice root sha256:00", "role"),
            (
                "alice viewer 0000000000000000000000000000000000000000000000000000000000000000",
                "sha256:",
            ),
            ("alice viewer sha256:abc", "64 hex"),
            ("al ice viewer sha256:00", "expected"),
            ("al/ice viewer sha256:00", "name"),
        ] {
            let err = TokenFile::parse("tokens", bad).unwrap_err().to_string();
            assert!(
                err.contains("tokens:1:") && err.contains(want),
                "{bad}: {err}"
            );
        }
        let dup = format!(
            "{}\n{}",
            line("a", Role::Viewer, "x"),
            line("a", Role::Admin, "y")
        );
        assert!(
            TokenFile::parse("t", &dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let dup = format!(
            "{}\n{}",
            line("a", Role::Viewer, "x"),
            line("b", Role::Admin, "x")
        );
        assert!(
            TokenFile::parse("t", &dup)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
