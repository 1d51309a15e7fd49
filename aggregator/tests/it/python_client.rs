//! The Python client (`clients/python/`) against the real
//! `credtrail-aggregator serve`: gRPC over TLS (verified against the test
//! CA), token authentication. Lists, filters, gets, streams a live alert
//! posted to the audit webhook while the stream is open, and is refused
//! with an unknown token (`clients/python/tests/test_live.py`, unittest).
//!
//! Its tools install themselves (idempotent, quick when present): a venv
//! under `target/python-client/venv` with the pinned
//! `clients/python/requirements.txt`, reinstalled only when that file
//! changes; the gRPC modules are generated from `proto/` by
//! `clients/python/generate.py` at each run (never committed).

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Duration as Age, Utc};

use crate::api_support::{BUILDER, grant_admin_in_namespace, grant_to_anonymous, token_used};
use crate::live_server::{LiveServer, WEBHOOK_TOKEN, run, tools_dir};

fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../clients/python")
}

/// The venv's python, with the pinned requirements installed.
fn ensure_venv() -> PathBuf {
    let dir = tools_dir("python-client");
    let venv = dir.join("venv");
    let python = venv.join("bin/python");
    let wanted = std::fs::read_to_string(client_dir().join("requirements.txt"))
        .expect("clients/python/requirements.txt");
    let marker = venv.join("credtrail-requirements.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(wanted.as_str()) && python.exists()
    {
        return python;
    }
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    }
    run(Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
        ])
        .arg(client_dir().join("requirements.txt")));
    std::fs::write(&marker, wanted).unwrap();
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_client_lists_streams_and_is_authenticated_against_live_serve() {
    let python = ensure_venv();
    run(Command::new(&python)
        .arg("generate.py")
        .current_dir(client_dir()));
    let server = LiveServer::start(true);
    let now = Utc::now();
    server
        .post_events(&[
            token_used("py-an1547", &BUILDER, "127.99.0.7", now - Age::minutes(10)),
            grant_admin_in_namespace(
                "py-an1579",
                "payments",
                "ops-admin",
                "alice",
                "mallory",
                "127.99.0.8",
                now - Age::minutes(8),
            ),
        ])
        .await;
    let live = serde_json::json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {},
        "items": [grant_to_anonymous("py-live", "py-live-grant", "eve", "127.99.0.9", now)]
    });
    let live_file = server.dir.path().join("live.json");
    std::fs::write(&live_file, live.to_string()).unwrap();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "unittest", "-v", "tests/test_live.py"])
        .current_dir(client_dir())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env(
            "CREDTRAIL_GRPC",
            format!("127.0.0.1:{}", server.grpc.port()),
        )
        .env("CREDTRAIL_CA", &server.ca)
        .env("CREDTRAIL_TOKEN", &server.token)
        .env(
            "CREDTRAIL_WEBHOOK",
            format!("https://{}/audit", server.webhook),
        )
        .env("CREDTRAIL_WEBHOOK_TOKEN", WEBHOOK_TOKEN)
        .env("CREDTRAIL_LIVE_EVENT", &live_file);
    let out = tokio::task::block_in_place(|| cmd.output()).expect("running python");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    assert!(
        out.status.success(),
        "the Python client's tests failed ({}):\n{text}\n--- server log:\n{}",
        out.status,
        server.log()
    );
    assert!(text.contains("OK"), "unittest did not report OK:\n{text}");
}
