//! `identify`, `read_capped` and their helpers on the files a pod controls:
//! exact fingerprints, the kind by content and else by path, size caps at
//! the byte, and FIFOs that must never block the agent.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;

/// Runs `open` (which opens the FIFO `fifo` for reading) on its own thread
/// and waits at most 5 s. An open that blocks fails the test with a message
/// (and is unblocked by opening the FIFO's write end), instead of hanging.
pub(crate) fn without_blocking_on<T: Send + 'static>(
    fifo: &Path,
    what: &str,
    open: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    let t = std::thread::spawn(move || {
        let _ = tx.send(open());
    });
    match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(v) => {
            t.join().unwrap();
            v
        }
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
            std::panic::resume_unwind(t.join().unwrap_err())
        }
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            // A writer appearing completes the reader's open.
            let _w = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(fifo);
            panic!(
                "{what}: opening the FIFO {} blocked for 5 s",
                fifo.display()
            );
        }
    }
}

pub(crate) fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}

fn jwt(payload: &str) -> String {
    format!(
        "{}.{}.c2lnbmF0dXJl",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
        URL_SAFE_NO_PAD.encode(payload)
    )
}

fn cert(cn: &str) -> (String, Vec<u8>) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let key = rcgen::KeyPair::generate().unwrap();
    let c = params.self_signed(&key).unwrap();
    (c.pem(), c.der().to_vec())
}

#[test]
fn sha256_is_the_lowercase_hex_digest_of_the_bytes() {
    // FIPS 180-2 test vectors.
    assert_eq!(
        sha256_hex(b"abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(
        sha256_hex(b""),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn read_capped_keeps_a_file_of_exactly_the_cap_and_refuses_one_byte_more() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, b"0123456789").unwrap();
    assert_eq!(read_capped(&p, 10).unwrap(), b"0123456789");
    assert_eq!(read_capped(&p, 11).unwrap(), b"0123456789");
    let e = read_capped(&p, 9).unwrap_err();
    assert!(matches!(e, ReadError::TooLarge { max: 9, .. }), "{e}");
    assert_eq!(e.kind(), None);
    let f = std::fs::File::open(&p).unwrap();
    assert!(matches!(
        read_capped_file(f, "shown", 9),
        Err(ReadError::TooLarge { ref path, max: 9 }) if path == "shown"
    ));
    let f = std::fs::File::open(&p).unwrap();
    assert_eq!(read_capped_file(f, "shown", 10).unwrap(), b"0123456789");
}

/// The agent's cap is 1 MiB: a file of exactly that is read, one more byte
/// is refused.
#[test]
fn credential_files_are_read_up_to_one_mib() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("admin.conf");
    std::fs::write(&p, vec![b'a'; 1 << 20]).unwrap();
    assert_eq!(
        read_capped(&p, MAX_CREDENTIAL_BYTES).unwrap().len(),
        1 << 20
    );
    std::fs::write(&p, vec![b'a'; (1 << 20) + 1]).unwrap();
    assert!(matches!(
        read_capped(&p, MAX_CREDENTIAL_BYTES),
        Err(ReadError::TooLarge { max: 1_048_576, .. })
    ));
}

/// A pod can put a FIFO where a token is expected: the agent neither
/// blocks on it nor reads it, and reports it as not a regular file.
#[test]
fn a_fifo_at_a_credential_path_is_not_read_and_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("token");
    mkfifo(&fifo);
    let p = fifo.clone();
    let e = without_blocking_on(&fifo, "read_capped", move || {
        read_capped(&p, MAX_CREDENTIAL_BYTES)
    })
    .unwrap_err();
    assert_eq!(e.kind(), Some(CredentialKind::NotARegularFile), "{e}");
    assert!(
        e.to_string()
            .ends_with("is a fifo, not a regular file: not read")
    );
    let e = read_capped(&dir.path().join("missing"), 10).unwrap_err();
    assert_eq!(e.kind(), None, "{e}");
}

#[test]
fn wipe_zeroes_the_secret_bytes_and_empties_the_buffer() {
    let mut buf = b"secret-token".to_vec();
    let n = buf.len();
    wipe(&mut buf);
    assert!(buf.is_empty());
    // The allocation is kept (capacity) and its old bytes are now zero.
    let old = &buf.spare_capacity_mut()[..n];
    // SAFETY: these bytes were initialised (the token, then zeros) before `clear`.
    assert!(old.iter().all(|b| unsafe { b.assume_init() } == 0));
}

/// Content that cannot be read is reported as what its path suggests.
#[test]
fn unreadable_content_is_reported_as_the_kind_its_path_suggests() {
    for (path, kind) in [
        (
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            CredentialKind::ServiceAccountToken,
        ),
        (
            "/etc/kubernetes/pki/apiserver-kubelet-client.crt",
            CredentialKind::ClientCertificate,
        ),
        (
            "/var/lib/kubelet/pki/kubelet-client-current.pem",
            CredentialKind::ClientCertificate,
        ),
        ("/etc/kubernetes/pki/sa.key", CredentialKind::PrivateKey),
        ("/root/.kube/config", CredentialKind::Kubeconfig),
        ("/x/token.d/a", CredentialKind::Kubeconfig),
        ("/x/my-token", CredentialKind::Kubeconfig),
        ("token", CredentialKind::ServiceAccountToken),
    ] {
        let id = identify(path, b"\xff\xfe\x00binary", &NoRefs);
        assert_eq!(id.kind, kind, "{path}");
        assert_eq!(
            id.error.as_deref(),
            Some("content is neither PEM nor UTF-8 text"),
            "{path}"
        );
        assert_eq!(id.sha256, Some(sha256_hex(b"\xff\xfe\x00binary")));
        let id = identify(path, b" \n\t", &NoRefs);
        assert_eq!(
            (id.kind, id.error.as_deref()),
            (kind, Some("file is empty"))
        );
    }
}

#[test]
fn a_certificate_pem_is_identified_by_its_first_certificate() {
    let (pem, der) = cert("system:node:node-a");
    let (pem2, _) = cert("second");
    let text = format!("{pem}{pem2}");
    let id = identify("/etc/kubernetes/kubelet.conf", text.as_bytes(), &NoRefs);
    assert_eq!(id.kind, CredentialKind::ClientCertificate);
    assert_eq!(id.error, None);
    assert_eq!(id.sha256, Some(sha256_hex(text.as_bytes())));
    let c = id.certificate.unwrap();
    assert_eq!(c.sha256, sha256_hex(&der));
    assert_eq!(c.subject_cn.as_deref(), Some("system:node:node-a"));
}

#[test]
fn a_broken_pem_is_named_and_still_fingerprinted() {
    // A CERTIFICATE block whose content is not X.509.
    let garbage = b"-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n";
    let id = identify("/etc/kubernetes/admin.conf", garbage, &NoRefs);
    assert_eq!(id.kind, CredentialKind::ClientCertificate);
    assert_eq!(id.certificate, None);
    assert!(
        id.error
            .as_deref()
            .unwrap()
            .starts_with("certificate DER does not parse as X.509"),
        "{:?}",
        id.error
    );
    assert_eq!(id.sha256, Some(sha256_hex(garbage)));
    // Not base64: the kind is the path's, the error the PEM problem.
    let bad = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let id = identify("/etc/kubernetes/pki/sa.key", bad, &NoRefs);
    assert_eq!(id.kind, CredentialKind::PrivateKey);
    assert_eq!(
        id.error.as_deref(),
        Some("PEM does not parse: a section is not base64")
    );
    assert_eq!(id.certificate, None);
}

/// A JWT is a token wherever it is found, fingerprinted trimmed (as the API
/// server sees it) with its claims.
#[test]
fn a_jwt_anywhere_is_a_token_with_its_claims() {
    let t = jwt(r#"{"sub":"system:serviceaccount:shop:web","kubernetes.io":{"namespace":"shop"}}"#);
    let file = format!("\n  {t}\n");
    let id = identify("/home/dev/.config/stolen.jwt", file.as_bytes(), &NoRefs);
    assert_eq!(id.kind, CredentialKind::ServiceAccountToken);
    assert_eq!(id.error, None);
    assert_eq!(id.sha256, Some(sha256_hex(t.as_bytes())));
    let token = id.token.unwrap();
    assert_eq!(token.sha256, sha256_hex(t.as_bytes()));
    let claims = token.claims.unwrap();
    assert_eq!(
        claims.sub.as_deref(),
        Some("system:serviceaccount:shop:web")
    );
    assert_eq!(claims.namespace.as_deref(), Some("shop"));
    assert_eq!(id.kubeconfig, None);
}

#[test]
fn a_kubeconfig_is_identified_with_its_users() {
    let text = "apiVersion: v1\nkind: Config\nclusters:\n- name: k\n  cluster: {server: 'https://10.0.0.1:6443'}\nusers:\n- name: bot\n  user: {token: opaque-bot-token}\n";
    let id = identify("/root/.kube/config", text.as_bytes(), &NoRefs);
    assert_eq!(id.kind, CredentialKind::Kubeconfig);
    assert_eq!(id.error, None);
    assert_eq!(id.token, None);
    let k = id.kubeconfig.unwrap();
    assert_eq!(k.servers, vec!["https://10.0.0.1:6443".to_string()]);
    assert_eq!(k.users.len(), 1);
    assert_eq!(k.users[0].name, "bot");
    assert_eq!(
        k.users[0].token.as_ref().unwrap().sha256,
        sha256_hex(b"opaque-bot-token")
    );
    // Plain text that is no kubeconfig: unknown, fingerprinted.
    let id = identify("/root/.kube/config", b"hello: world\n", &NoRefs);
    assert_eq!(id.kind, CredentialKind::Unknown);
    assert_eq!(
        id.error.as_deref(),
        Some("not a kubeconfig: no clusters, contexts or users")
    );
    assert_eq!(id.sha256, Some(sha256_hex(b"hello: world\n")));
}
