//! `credtrail-aggregator alerts …` (the analyst CLI) run as a process against
//! a live aggregator's HTTP API on loopback with real token auth.

use crate::api_support;

use api_support::{Api, RESPONDER_TOKEN, VIEWER_TOKEN, base_time, grant_to_anonymous};
use serde_json::Value;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// Runs the CLI with `args` against `api`, the token from `token_file` or
/// (when `None`) from `env_token`.
async fn cli(
    api: &Api,
    token_file: Option<&std::path::Path>,
    env_token: Option<&str>,
    args: &[&str],
) -> Run {
    cli_at(&format!("http://{}", api.http), token_file, env_token, args).await
}

async fn cli_at(
    url: &str,
    token_file: Option<&std::path::Path>,
    env_token: Option<&str>,
    args: &[&str],
) -> Run {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"));
    cmd.arg("alerts")
        .arg("--url")
        .arg(url)
        .env_remove("CREDTRAIL_API_TOKEN")
        .env_remove("CREDTRAIL_API_TOKEN_FILE")
        .env_remove("CREDTRAIL_API_URL");
    if let Some(f) = token_file {
        cmd.arg("--token-file").arg(f);
    }
    if let Some(t) = env_token {
        cmd.env("CREDTRAIL_API_TOKEN", t);
    }
    cmd.args(args);
    let out = tokio::time::timeout(std::time::Duration::from_secs(20), cmd.output())
        .await
        .expect("the CLI answers within 20 s")
        .expect("the CLI runs");
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    for t in [RESPONDER_TOKEN, VIEWER_TOKEN] {
        assert!(
            !run.stdout.contains(t) && !run.stderr.contains(t),
            "the token never appears in the CLI's output"
        );
    }
    run
}

#[tokio::test]
async fn the_analyst_cli_lists_shows_and_triages_alerts() {
    let api = Api::start().await;
    let hostile = "eve\u{1b}]0;owned\u{7}\u{202e}";
    let raised = api
        .ingest(vec![grant_to_anonymous(
            "aud-cli-1",
            "bind-cli-1",
            hostile,
            "127.0.66.61",
            base_time(),
        )])
        .await;
    assert_eq!(raised, 1);
    let dir = tempfile::tempdir().unwrap();
    let tf = dir.path().join("token");
    std::fs::write(&tf, format!("{RESPONDER_TOKEN}\n")).unwrap();
    let tf = Some(tf.as_path());

    let r = cli(
        &api,
        tf,
        None,
        &["list", "--output", "json", "--status", "open"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    let id = v["alerts"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["alerts"].as_array().unwrap().len(), 1);

    // The table never passes terminal controls through.
    let r = cli(&api, tf, None, &["list"]).await;
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.starts_with("TIME"), "{}", r.stdout);
    assert!(
        r.stdout.contains(&id) && r.stdout.contains("open"),
        "{}",
        r.stdout
    );
    assert!(
        !r.stdout.contains('\u{1b}') && !r.stdout.contains('\u{202e}'),
        "{:?}",
        r.stdout
    );
    assert!(r.stdout.contains("eve\\u{1b}]0;owned"), "{}", r.stdout);

    let r = cli(
        &api,
        tf,
        None,
        &["ack", &id, "--assign", "alice", "--note", "on it"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert!(
        r.stdout.contains("acknowledged") && r.stdout.contains("alice"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("token:responder"), "{}", r.stdout);
    let r = cli(&api, tf, None, &["note", &id, "second\nline"]).await;
    assert!(r.ok, "{}", r.stderr);
    let r = cli(&api, tf, None, &["assign", &id, "--unassign"]).await;
    assert!(r.ok, "{}", r.stderr);
    let r = cli(&api, tf, None, &["show", &id]).await;
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("history"), "{}", r.stdout);
    assert!(r.stdout.contains("second\\nline"), "{}", r.stdout);
    assert!(r.stdout.contains("(unassigned)"), "{}", r.stdout);
    assert!(!r.stdout.contains('\u{1b}'), "{:?}", r.stdout);
    let r = cli(
        &api,
        tf,
        None,
        &["list", "--output", "json", "--status", "acknowledged"],
    )
    .await;
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["alerts"][0]["id"], id.as_str());
    assert!(v["alerts"][0]["triage"]["assignee"].is_null());

    // A viewer (token from the environment) may list but not triage.
    let r = cli(
        &api,
        None,
        Some(VIEWER_TOKEN),
        &["list", "--output", "json"],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let r = cli(
        &api,
        None,
        Some(VIEWER_TOKEN),
        &["close", &id, "--as", "benign"],
    )
    .await;
    assert!(!r.ok);
    assert!(r.stderr.contains("403"), "{}", r.stderr);
    // No token at all: told how to give one.
    let r = cli(&api, None, None, &["list"]).await;
    assert!(!r.ok);
    assert!(r.stderr.contains("--token-file"), "{}", r.stderr);
    // Bad input is the API's 400, named.
    let r = cli(&api, tf, None, &["list", "--status", "done"]).await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("400") && r.stderr.contains("status"),
        "{}",
        r.stderr
    );

    // Close as false positive and create the suggested suppression; the
    // hostile identity has no `*`, so it is matched exactly.
    let r = cli(
        &api,
        tf,
        None,
        &[
            "close",
            &id,
            "--as",
            "false-positive",
            "--suppress",
            "--output",
            "json",
            "--note",
            "lab",
        ],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["triage"]["status"], "closed_false_positive");
    assert_eq!(v["created_suppression"]["created_by"], "token:responder");
    assert_eq!(v["created_suppression"]["match"]["username"], hostile);
    let s = api
        .get_json("/api/v1/suppressions", hyper::StatusCode::OK)
        .await;
    assert_eq!(s["suppressions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn the_analyst_cli_verifies_an_https_api_against_its_ca_file() {
    use credtrail_aggregator::auth::config::ApiAuthConfig;
    let dir = tempfile::tempdir().unwrap();
    let (pki, paths) = crate::common::tls::pki(dir.path());
    let tokens = dir.path().join("tokens");
    std::fs::write(&tokens, api_support::token_file_text()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let auth = ApiAuthConfig {
        token_file: Some(tokens),
        tls_cert: Some(paths.cert.clone()),
        tls_key: Some(paths.key.clone()),
        ..Default::default()
    }
    .build(&[addr])
    .unwrap();
    let state = credtrail_aggregator::state::AppState::in_memory(api_support::cluster_policy(""))
        .unwrap()
        .with_auth(auth);
    tokio::spawn(credtrail_aggregator::api::http::serve(
        listener,
        state,
        std::future::pending(),
    ));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let url = format!("https://{addr}");
    let ca_arg = ca.to_str().unwrap();
    let r = cli_at(
        &url,
        None,
        Some(VIEWER_TOKEN),
        &["list", "--output", "json", "--ca-file", ca_arg],
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["alerts"].as_array().unwrap().is_empty());
    // No CA: refused before connecting, naming the option.
    let r = cli_at(&url, None, Some(VIEWER_TOKEN), &["list"]).await;
    assert!(!r.ok);
    assert!(r.stderr.contains("--ca-file"), "{}", r.stderr);
    // A CA that did not sign the server's certificate: the handshake fails.
    let other = tempfile::tempdir().unwrap();
    let (other_pki, _) = crate::common::tls::pki(other.path());
    let wrong = dir.path().join("wrong.pem");
    std::fs::write(&wrong, &other_pki.ca_pem).unwrap();
    let r = cli_at(
        &url,
        None,
        Some(VIEWER_TOKEN),
        &["list", "--ca-file", wrong.to_str().unwrap()],
    )
    .await;
    assert!(!r.ok);
    assert!(r.stderr.contains("TLS"), "{}", r.stderr);
}
