//! The web page in a real browser: Debian's Chromium, headless, driven by
//! playwright-core (npm) from `web/browser.cjs`, against the real
//! `credtrail-aggregator serve` process with token authentication. The
//! script logs in with a token made by `api-token`, filters, opens an
//! alert, watches a live alert arrive (posted to the audit webhook while the
//! page is open), checks that hostile alert fields stay text, and takes
//! screenshots of the main views.
//!
//! Tools install themselves when missing (idempotent, quick when present):
//! `apt-get install chromium` (as root) and `npm install playwright-core`
//! into `target/web-test/`. Screenshots go to `target/web-test/screenshots/`;
//! `CREDTRAIL_SCREENSHOTS=docs/screenshots` (relative to the workspace)
//! refreshes the committed set.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{Duration as Age, Utc};
use serde_json::Value;

use crate::api_support::{BUILDER, grant_admin_in_namespace, grant_to_anonymous, token_used};
use crate::live_server::{LiveServer, WEBHOOK_TOKEN, run, tools_dir};

/// The pinned driver (playwright-core drives any Chromium through CDP; it
/// never downloads a browser of its own).
const PLAYWRIGHT_CORE: &str = "1.65.1";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Hostile alert fields: markup that would run script if inserted as HTML.
pub const XSS_ACTOR: &str = "<img src=x onerror=\"window.__pwned=1\">";
pub const XSS_NAME: &str = "<script>window.__pwned=2</script>";

/// The same request shape with another verb, resource, namespace and code.
fn retarget(mut e: Value, verb: &str, resource: &str, ns: &str, code: i64) -> Value {
    e["verb"] = verb.into();
    e["objectRef"]["resource"] = resource.into();
    e["objectRef"]["namespace"] = ns.into();
    e["requestURI"] = format!("/api/v1/namespaces/{ns}/{resource}").into();
    e["responseStatus"]["code"] = code.into();
    if code == 403 {
        e["annotations"]["authorization.k8s.io/decision"] = "forbid".into();
    }
    e
}

/// Debian's Chromium (installed with apt-get when missing and root).
fn ensure_chromium() -> PathBuf {
    let p = PathBuf::from(CHROMIUM);
    if p.exists() {
        return p;
    }
    // SAFETY: getuid has no preconditions.
    assert!(
        unsafe { libc::getuid() } == 0,
        "{CHROMIUM} is missing: apt-get install chromium (needs root)"
    );
    run(Command::new("apt-get").arg("update").arg("-qq"));
    run(Command::new("apt-get")
        .args([
            "install",
            "-y",
            "-qq",
            "--no-install-recommends",
            "chromium",
        ])
        .env("DEBIAN_FRONTEND", "noninteractive"));
    assert!(
        p.exists(),
        "apt-get installed chromium but {CHROMIUM} is missing"
    );
    p
}

/// playwright-core at the pinned version under `target/web-test/`.
fn ensure_playwright() -> PathBuf {
    let dir = tools_dir("web-test");
    let pkg = dir.join("node_modules/playwright-core");
    let version = std::fs::read_to_string(pkg.join("package.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_owned));
    if version.as_deref() != Some(PLAYWRIGHT_CORE) {
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(&dir)
            .arg(format!("playwright-core@{PLAYWRIGHT_CORE}")));
    }
    assert!(
        pkg.join("package.json").exists(),
        "npm did not install playwright-core"
    );
    pkg
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn screenshots_dir() -> PathBuf {
    match std::env::var_os("CREDTRAIL_SCREENSHOTS") {
        Some(d) => workspace().join(d),
        None => tools_dir("web-test").join("screenshots"),
    }
}

/// Runs the browser script with `env`; panics with its output (and the
/// server's log) if it fails or runs past `limit`.
fn run_script(server: &LiveServer, env: &[(&str, String)], limit: Duration) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/web/browser.cjs");
    let mut cmd = Command::new("node");
    cmd.arg(&script)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("running node (Node.js is needed for the browser test)");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    match status {
        Some(st) if st.success() => {}
        Some(st) => panic!(
            "browser script failed ({st}):\n{text}\n--- server log:\n{}",
            server.log()
        ),
        None => panic!("browser script still running after {limit:?}:\n{text}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_page_in_chromium_login_filter_detail_live_and_hostile_fields() {
    let chromium = ensure_chromium();
    let playwright = ensure_playwright();
    let server = LiveServer::start(false);
    let now = Utc::now();
    // Seeded before the page opens: one alert of each analytic and one whose
    // fields are markup.
    server
        .post_events(&[
            token_used(
                "seed-an1547",
                &BUILDER,
                "127.99.0.7",
                now - Age::minutes(10),
            ),
            grant_admin_in_namespace(
                "seed-an1579",
                "payments",
                "ops-admin",
                "alice",
                "mallory",
                "127.99.0.8",
                now - Age::minutes(8),
            ),
            grant_to_anonymous(
                "seed-xss",
                XSS_NAME,
                XSS_ACTOR,
                "127.99.0.6",
                now - Age::minutes(6),
            ),
        ])
        .await;
    // What the stolen token did next from there: the AN1547 alert's activity.
    server
        .post_events(&[
            retarget(
                token_used("seed-then-1", &BUILDER, "127.99.0.7", now - Age::minutes(9)),
                "get",
                "secrets",
                "kube-system",
                200,
            ),
            retarget(
                token_used(
                    "seed-then-2",
                    &BUILDER,
                    "127.99.0.7",
                    now - Age::seconds(530),
                ),
                "create",
                "pods",
                "ci",
                403,
            ),
        ])
        .await;
    // Posted by the script once the page shows its live stream.
    let live_event = grant_to_anonymous("live-1", "live-grant", "eve", "127.99.0.9", now);
    let live_body = serde_json::json!({
        "kind": "EventList", "apiVersion": "audit.k8s.io/v1", "metadata": {}, "items": [live_event]
    });
    let live_file = server.dir.path().join("live.json");
    std::fs::write(&live_file, live_body.to_string()).unwrap();
    let shots = screenshots_dir();
    std::fs::create_dir_all(&shots).unwrap();
    let env = [
        ("BASE", server.api_url()),
        ("TOKEN", server.token.clone()),
        ("CHROMIUM", chromium.display().to_string()),
        ("PLAYWRIGHT", playwright.display().to_string()),
        ("SHOTS", shots.display().to_string()),
        ("WEBHOOK", format!("https://{}/audit", server.webhook)),
        ("WEBHOOK_TOKEN", WEBHOOK_TOKEN.to_owned()),
        ("CA_FILE", server.ca.display().to_string()),
        ("LIVE_EVENT", live_file.display().to_string()),
        ("XSS_ACTOR", XSS_ACTOR.to_owned()),
    ];
    tokio::task::block_in_place(|| run_script(&server, &env, Duration::from_secs(90)));
}
