//! Reading the aggregator through its HTTP/JSON query API, and the alerts
//! table the demo prints.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use credtrail_aggregator::alert::Alert;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;

/// `GET http://<addr><path>` without credentials (health, metrics): status and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    http_get_as(addr, path, None).await
}

/// `GET http://<addr><path>` with `Authorization: Bearer <token>` when given.
pub async fn http_get_as(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP handshake")?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::get(path).header("host", addr.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .with_context(|| format!("GET {path}"))?;
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the body")?
        .to_bytes();
    driver.abort();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// Every raised alert, newest first (`GET /api/v1/alerts` with `token`).
pub async fn fetch_alerts(api: SocketAddr, token: &str) -> anyhow::Result<Vec<Alert>> {
    let (status, body) = http_get_as(api, "/api/v1/alerts?page_size=1000", Some(token)).await?;
    if status != 200 {
        bail!("GET /api/v1/alerts answered {status}: {body}");
    }
    #[derive(serde::Deserialize)]
    struct Page {
        alerts: Vec<Alert>,
    }
    let page: Page = serde_json::from_str(&body).with_context(|| format!("alerts JSON: {body}"))?;
    Ok(page.alerts)
}

/// The value of a Prometheus sample line `name{...} value` (first match).
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits until `/metrics` shows `pred` true for metric `name`.
pub async fn wait_metric(
    api: SocketAddr,
    name: &str,
    timeout: Duration,
    pred: impl Fn(f64) -> bool,
) -> anyhow::Result<f64> {
    let start = Instant::now();
    loop {
        if let Ok((200, text)) = http_get(api, "/metrics").await
            && let Some(v) = metric(&text, name)
            && pred(v)
        {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!(
                "{name} on http://{api}/metrics did not reach the expected value within {timeout:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The alerts as a table, oldest first, with the evidence under each.
pub fn render(alerts: &[Alert]) -> String {
    let mut alerts: Vec<&Alert> = alerts.iter().collect();
    alerts.sort_by_key(|a| a.time);
    let mut out = String::new();
    out.push_str(&format!(
        "{:<9} {:<11} {:<7} {:<36} {:<24} {}\n",
        "SEVERITY", "RULE", "ANALYTIC", "IDENTITY", "SOURCE", "REQUEST"
    ));
    out.push_str(&format!("{}\n", "-".repeat(120)));
    for a in alerts {
        let source = format!(
            "{} ({})",
            a.source_ip
                .map(|i| i.to_string())
                .unwrap_or_else(|| "?".into()),
            serde_json::to_value(a.source_class)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        );
        let r = &a.request;
        let request = format!(
            "{} {}{} -> {}",
            r.verb,
            r.resource.clone().unwrap_or_default(),
            r.name.as_ref().map(|n| format!("/{n}")).unwrap_or_default(),
            r.response_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| r.decision.clone())
        );
        out.push_str(&format!(
            "{:<9} {:<11} {:<7} {:<36} {:<24} {}\n",
            a.severity.as_str(),
            cut(&a.rule, 11),
            a.analytic,
            cut(&a.identity.username, 36),
            cut(&source, 24),
            request
        ));
        out.push_str(&format!("          why: {}\n", a.reason));
        for x in &a.expected {
            out.push_str(&format!(
                "          expected: {} {} ({})\n",
                x.kind, x.value, x.basis
            ));
        }
        for ev in &a.evidence {
            let mut line = format!("          evidence: {} on node {}", ev.kind, ev.node);
            if let Some(p) = &ev.pod {
                line.push_str(&format!(", pod {p}"));
            }
            if let (Some(pid), Some(comm)) = (ev.pid, &ev.comm) {
                line.push_str(&format!(", pid {pid} ({comm})"));
            }
            if let Some(path) = &ev.path {
                line.push_str(&format!(", {path}"));
            }
            out.push_str(&line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_lines_are_found_by_exact_name() {
        let text = "# HELP x\ncredtrail_agents_connected_total 9\ncredtrail_agents_connected 1\n";
        assert_eq!(metric(text, "credtrail_agents_connected"), Some(1.0));
        assert_eq!(metric("a{b=\"c\"} 2.5\n", "a"), Some(2.5));
        assert_eq!(metric("ab 1\n", "a"), None);
    }
}
