//! Syslog delivery against a real rsyslog from Debian, started by the test in
//! the foreground with a generated configuration: imtcp on a loopback port
//! (octet-counted framing), plain TCP and TLS (gtls driver, certificates from
//! the test PKI). rsyslog writes what it parsed (PRI, HOSTNAME, APP-NAME,
//! MSGID, MSG) to a file that the test reads back.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use credtrail_aggregator::alert::Alert;
use credtrail_aggregator::api::export::parse_cef;
use credtrail_aggregator::deliver::{Deliveries, config};
use credtrail_aggregator::ingest::tls::TlsPaths;
use credtrail_aggregator::metrics::Metrics;

use crate::tools;

struct Rsyslog {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    fn out(&self) -> PathBuf {
        self.dir.join("out.log")
    }

    /// Lines rsyslog wrote, waiting (at most 5 s) until there are `n`.
    fn lines(&self, n: usize) -> Vec<String> {
        let t0 = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.out()).unwrap_or_default();
            let lines: Vec<String> = text.lines().map(str::to_owned).collect();
            if lines.len() >= n || t0.elapsed() > Duration::from_secs(5) {
                return lines;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts rsyslogd (plain TCP or TLS) on `port` (0: rsyslog picks one).
fn rsyslog(dir: &Path, tls: Option<&TlsPaths>, port: u16) -> Rsyslog {
    let bin = tools::debian_program("rsyslogd", &["rsyslog", "rsyslog-gnutls"]);
    let d = dir.display();
    let (global_tls, module) = match tls {
        Some(t) => {
            tools::debian_file(
                &[
                    "/usr/lib/x86_64-linux-gnu/rsyslog/lmnsd_gtls.so",
                    "/usr/lib/aarch64-linux-gnu/rsyslog/lmnsd_gtls.so",
                    "/usr/lib/rsyslog/lmnsd_gtls.so",
                ],
                &["rsyslog-gnutls"],
            );
            (
                format!(
                    r#" DefaultNetstreamDriverCAFile="{}" DefaultNetstreamDriverCertFile="{}" DefaultNetstreamDriverKeyFile="{}""#,
                    t.client_ca.as_ref().unwrap().display(),
                    t.cert.display(),
                    t.key.display()
                ),
                r#"module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")"#,
            )
        }
        None => (String::new(), r#"module(load="imtcp")"#),
    };
    let conf = format!(
        r#"global(workDirectory="{d}" maxMessageSize="64k"{global_tls})
{module}
template(name="fields" type="string" string="%pri%|%hostname%|%app-name%|%msgid%|%msg%\n")
ruleset(name="out") {{ action(type="omfile" file="{d}/out.log" template="fields") }}
input(type="imtcp" address="127.0.0.1" port="{port}" listenPortFileName="{d}/port" ruleset="out")
"#
    );
    let conf_path = dir.join("rsyslog.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = std::fs::File::create(dir.join("rsyslogd.log")).unwrap();
    let child = Command::new(bin)
        .arg("-n")
        .arg("-f")
        .arg(&conf_path)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting rsyslogd");
    let mut r = Rsyslog {
        child,
        dir: dir.to_path_buf(),
        port: 0,
    };
    let t0 = Instant::now();
    loop {
        // rsyslog writes the port file only for port 0; a fixed port is polled.
        let listening = if port == 0 {
            std::fs::read_to_string(dir.join("port"))
                .ok()
                .and_then(|s| s.trim().parse::<u16>().ok())
        } else {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| port)
        };
        if let Some(p) = listening {
            r.port = p;
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "rsyslogd did not listen within 5 s: {}",
            std::fs::read_to_string(dir.join("rsyslogd.log")).unwrap_or_default()
        );
        if let Ok(Some(st)) = r.child.try_wait() {
            panic!(
                "rsyslogd exited ({st}): {}",
                std::fs::read_to_string(dir.join("rsyslogd.log")).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    r
}

fn sample_alerts() -> Vec<Alert> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/scenarios");
    let mut alerts = Vec::new();
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in dirs {
        if !d.join("scenario.yaml").exists() {
            continue;
        }
        for a in credtrail_aggregator::eval::run_scenario(&d).alerts {
            if !alerts.iter().any(|x: &Alert| x.rule == a.rule) {
                alerts.push(a);
            }
        }
    }
    // Attacker text: a newline and a frame-looking prefix must stay inside one message.
    let mut odd = alerts[0].clone();
    odd.id = "odd-1".into();
    odd.reason = "line one\n17 <13>1 forged - - - -\nthree é".into();
    alerts.push(odd);
    alerts
}

fn metric(m: &Metrics, name: &str, sink: &str) -> u64 {
    let text = m.encode();
    let key = format!("{name}{{sink=\"{sink}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} not in /metrics:\n{text}"))
}

fn check_received(lines: &[String], alerts: &[Alert]) {
    assert_eq!(lines.len(), alerts.len(), "{lines:#?}");
    for (line, a) in lines.iter().zip(alerts) {
        let mut parts = line.splitn(5, '|');
        let pri: u32 = parts.next().unwrap().parse().unwrap();
        let host = parts.next().unwrap();
        let app = parts.next().unwrap();
        let msgid = parts.next().unwrap();
        let msg = parts.next().unwrap();
        assert_eq!(
            pri,
            4 * 8
                + u32::from(credtrail_aggregator::deliver::syslog::syslog_severity(
                    a.severity
                ))
        );
        assert_eq!(host, "agg-1");
        assert_eq!(app, "credtrail");
        assert_eq!(msgid, a.rule);
        let msg = msg.trim_start();
        let (h, kv) = parse_cef(msg).unwrap_or_else(|| panic!("not CEF: {msg}"));
        assert_eq!(h[4], a.rule);
        let get = |k: &str| kv.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone());
        assert_eq!(get("externalId").as_deref(), Some(a.id.as_str()), "{msg}");
    }
}

async fn deliver(
    sink_yaml: &str,
    alerts: &[Alert],
) -> (Arc<Metrics>, tokio::sync::watch::Sender<bool>) {
    let sinks = config::parse(Path::new("outputs.yaml"), sink_yaml).unwrap();
    let metrics = Arc::new(Metrics::new());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let d = Deliveries::start(sinks, metrics.clone(), stop_rx).unwrap();
    for a in alerts {
        d.offer(a.clone());
    }
    (metrics, stop_tx)
}

async fn wait_sent(m: &Metrics, sink: &str, n: u64) {
    let t0 = Instant::now();
    while metric(m, "credtrail_delivery_sent_total", sink) < n
        && t0.elapsed() < Duration::from_secs(5)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tcp_reaches_a_real_rsyslog_as_rfc5424_cef() {
    let dir = tempfile::tempdir().unwrap();
    let rs = rsyslog(dir.path(), None, 0);
    let alerts = sample_alerts();
    let yaml = format!(
        "sinks:\n- {{name: siem, type: syslog, address: '127.0.0.1:{}', hostname: agg-1}}\n",
        rs.port
    );
    let (m, _stop) = deliver(&yaml, &alerts).await;
    wait_sent(&m, "siem", alerts.len() as u64).await;
    let lines = rs.lines(alerts.len());
    check_received(&lines, &alerts);
    assert_eq!(
        metric(&m, "credtrail_delivery_sent_total", "siem"),
        alerts.len() as u64
    );
    assert_eq!(metric(&m, "credtrail_delivery_failed_total", "siem"), 0);
    assert_eq!(metric(&m, "credtrail_delivery_queue_depth", "siem"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_over_tls_reaches_a_real_rsyslog_with_gtls() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, paths) = crate::common::tls::pki(dir.path());
    let rs = rsyslog(dir.path(), Some(&paths), 0);
    let alerts = sample_alerts();
    let yaml = format!(
        "sinks:\n- {{name: siem-tls, type: syslog, tls: true, ca_file: '{}', address: '127.0.0.1:{}', hostname: agg-1}}\n",
        paths.client_ca.as_ref().unwrap().display(),
        rs.port
    );
    let (m, _stop) = deliver(&yaml, &alerts).await;
    wait_sent(&m, "siem-tls", alerts.len() as u64).await;
    let lines = rs.lines(alerts.len());
    check_received(&lines, &alerts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_tls_refuses_a_receiver_outside_the_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (_pki, paths) = crate::common::tls::pki(dir.path());
    let rs = rsyslog(dir.path(), Some(&paths), 0);
    // Another CA: the handshake must fail, nothing is written, attempts are bounded.
    let other = tempfile::tempdir().unwrap();
    let (_p2, other_paths) = crate::common::tls::pki(other.path());
    let yaml = format!(
        "sinks:\n- {{name: wrong-ca, type: syslog, tls: true, ca_file: '{}', address: '127.0.0.1:{}', max_attempts: 2, backoff_initial: 50ms}}\n",
        other_paths.client_ca.as_ref().unwrap().display(),
        rs.port
    );
    let alerts = sample_alerts();
    let (m, _stop) = deliver(&yaml, &alerts[..1]).await;
    let t0 = Instant::now();
    while metric(&m, "credtrail_delivery_failed_total", "wrong-ca") < 1 {
        assert!(t0.elapsed() < Duration::from_secs(5), "no failure counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric(&m, "credtrail_delivery_retries_total", "wrong-ca"),
        1
    );
    assert_eq!(metric(&m, "credtrail_delivery_sent_total", "wrong-ca"), 0);
    assert!(
        std::fs::read_to_string(rs.out())
            .unwrap_or_default()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_retries_until_rsyslog_comes_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let alerts = sample_alerts();
    let yaml = format!(
        "sinks:\n- {{name: late, type: syslog, address: '127.0.0.1:{port}', hostname: agg-1, max_attempts: 50, backoff_initial: 50ms, backoff_max: 200ms}}\n"
    );
    let (m, _stop) = deliver(&yaml, &alerts[..1]).await;
    let t0 = Instant::now();
    while metric(&m, "credtrail_delivery_retries_total", "late") < 2 {
        assert!(t0.elapsed() < Duration::from_secs(5), "no retries counted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rs = rsyslog(dir.path(), None, port);
    wait_sent(&m, "late", 1).await;
    let lines = rs.lines(1);
    check_received(&lines, &alerts[..1]);
    assert_eq!(metric(&m, "credtrail_delivery_failed_total", "late"), 0);
}
