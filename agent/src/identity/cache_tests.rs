//! The identity cache: what a key is made of, what is kept, and its bound.

use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, SystemTime};

use super::*;

fn token_id(sha: &str) -> CredentialIdentity {
    CredentialIdentity {
        kind: CredentialKind::ServiceAccountToken,
        sha256: Some(sha.into()),
        ..Default::default()
    }
}

fn key(ino: u64) -> FileKey {
    FileKey {
        dev: 1,
        ino,
        size: 10,
        mtime_ns: 0,
        ctime_ns: 0,
    }
}

/// The key is the file's device, inode, size and both times to the
/// nanosecond: a token rewritten in the same second is a new key.
#[test]
fn the_key_holds_the_times_to_the_nanosecond() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, "abc").unwrap();
    let f = std::fs::File::options().write(true).open(&p).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789))
        .unwrap();
    let meta = std::fs::metadata(&p).unwrap();
    let k = FileKey::of(&meta);
    assert_eq!(k.mtime_ns, 1_700_000_000_123_456_789);
    assert_eq!(
        k.ctime_ns,
        i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec())
    );
    assert_eq!((k.dev, k.ino, k.size), (meta.dev(), meta.ino(), 3));
    assert_eq!(k.ino(), meta.ino());
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_790))
        .unwrap();
    let k2 = FileKey::of(&std::fs::metadata(&p).unwrap());
    assert_eq!(k2.mtime_ns, 1_700_000_000_123_456_790);
    assert_ne!(k, k2);
}

/// Identities with an error are not kept (the next read may succeed), and
/// hits are counted.
#[test]
fn errors_are_not_kept_and_hits_are_counted() {
    let mut c = IdentityCache::default();
    let failed = CredentialIdentity {
        error: Some("not a JWT: token is empty".into()),
        ..token_id("e3b0")
    };
    c.insert(key(1), &failed);
    assert_eq!(c.get(&key(1)), None);
    c.insert(key(2), &token_id("aa"));
    assert_eq!(c.get(&key(2)), Some(token_id("aa")));
    assert_eq!(c.get(&key(2)), Some(token_id("aa")));
    assert_eq!(c.get(&key(3)), None);
    assert_eq!(c.hits(), 2);
    // A certificate is kept like a token.
    let cert = CredentialIdentity {
        kind: CredentialKind::ClientCertificate,
        ..token_id("cc")
    };
    c.insert(key(4), &cert);
    assert_eq!(c.get(&key(4)), Some(cert));
    assert_eq!(c.hits(), 3);
}

/// A pod opening many distinct files cannot grow the cache past its bound:
/// at the bound it is emptied, then refilled.
#[test]
fn the_cache_is_emptied_at_its_bound() {
    let mut c = IdentityCache::default();
    for i in 0..MAX_CACHED as u64 {
        c.insert(key(i), &token_id("t"));
    }
    assert_eq!(c.map.len(), MAX_CACHED);
    assert!(c.get(&key(0)).is_some());
    assert!(c.get(&key(MAX_CACHED as u64 - 1)).is_some());
    c.insert(key(u64::MAX), &token_id("new"));
    assert_eq!(c.map.len(), 1);
    assert_eq!(c.get(&key(0)), None);
    assert_eq!(c.get(&key(u64::MAX)), Some(token_id("new")));
    assert_eq!(MAX_CACHED, 4096);
}
