//! The real `credtrail-aggregator serve` process under attack, in a child
//! process (so this test binary's own limits stay untouched):
//! - out of file descriptors (a low RLIMIT_NOFILE and a flood of idle
//!   connections): accept errors back off and are logged at most once per
//!   interval, counted in `/metrics`, and serving resumes afterwards;
//! - SIGTERM while a live-stream client is connected ends the process within
//!   the shutdown grace.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::api_support::{VIEWER_TOKEN, token_file_text};

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `serve` with only the HTTP API on `api`, stderr to `log`.
fn spawn_serve(dir: &Path, api: SocketAddr, extra: &[&str], nofile: Option<u64>) -> Child {
    let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let tokens = dir.join("api-tokens");
    std::fs::write(&tokens, token_file_text()).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_credtrail-aggregator"));
    cmd.args(["serve", "--webhook-listen", "off", "--agent-listen", "off"])
        .args(["--grpc-listen", "off", "--api-listen", &api.to_string()])
        .arg("--db")
        .arg(dir.join("agg.db"))
        .arg("--api-token-file")
        .arg(&tokens)
        .args(extra)
        .env("CREDTRAIL_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    if let Some(n) = nofile {
        // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                let lim = libc::rlimit {
                    rlim_cur: n,
                    rlim_max: n,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    cmd.spawn().expect("spawning credtrail-aggregator serve")
}

fn wait_up(api: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("serve exited early: {st}");
        }
        if let Ok((200, _)) = get(api, "/healthz") {
            return;
        }
        assert!(Instant::now() < deadline, "serve did not come up on {api}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {out:?}")))?;
    Ok((status, out))
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(st) = child.try_wait().unwrap() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// Kills the child on drop (a failing test leaves no process behind).
struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn out_of_file_descriptors_the_accept_loop_backs_off_and_logs_once_per_interval() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut child = Reap(spawn_serve(dir.path(), api, &[], Some(64)));
    wait_up(api, &mut child.0);
    // Far more idle connections than the process has descriptors: the kernel
    // queues them; accept() then fails with EMFILE.
    let flood: Vec<TcpStream> = (0..120)
        .filter_map(|_| TcpStream::connect_timeout(&api, Duration::from_secs(2)).ok())
        .collect();
    assert!(flood.len() >= 80, "only {} connections opened", flood.len());
    std::thread::sleep(Duration::from_secs(3));
    assert!(child.0.try_wait().unwrap().is_none(), "serve died");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).unwrap();
    let lines = log.lines().filter(|l| l.contains("accept failed")).count();
    assert!(
        (1..=2).contains(&lines),
        "{lines} accept-failure log lines in 3 s (want 1, at most one per 5 s):\n{log}"
    );
    // The idle clients leave (or time out): serving resumes, errors were counted.
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(20);
    let metrics = loop {
        match get(api, "/metrics") {
            Ok((200, m)) => break m,
            _ => {
                assert!(Instant::now() < deadline, "serve did not recover");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    let errors: f64 = metrics
        .lines()
        .find(|l| l.starts_with("credtrail_accept_errors_total{listener=\"http_api\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no accept-error counter:\n{metrics}"));
    // Backing off from 10 ms to 1 s, 3 s of EMFILE is a few dozen attempts at
    // most; a spinning loop makes millions.
    assert!(
        (1.0..200.0).contains(&errors),
        "{errors} accept errors counted"
    );
}

#[test]
fn sigterm_ends_serve_while_a_live_stream_client_is_connected() {
    let dir = tempfile::tempdir().unwrap();
    let api = free_port();
    let mut child = Reap(spawn_serve(
        dir.path(),
        api,
        &["--shutdown-grace", "2s"],
        None,
    ));
    wait_up(api, &mut child.0);
    let mut live = TcpStream::connect(api).unwrap();
    write!(
        live,
        "GET /api/v1/alerts/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {VIEWER_TOKEN}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    live.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut head = [0u8; 12];
    live.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    let pid = i32::try_from(child.0.id()).unwrap();
    // SAFETY: sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_exit(&mut child.0, Duration::from_secs(10))
        .expect("serve still running 10 s after SIGTERM with a live-stream client connected");
    assert!(status.success(), "serve exited with {status}");
    drop(live);
}
