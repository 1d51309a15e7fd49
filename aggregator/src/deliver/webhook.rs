//! HTTP webhook delivery: one POST per alert (HTTP/1.1, a new connection
//! each, TLS verified against the sink's CA or the system's), with the body
//! the sink asks for: the alert JSON (or OCSF), a Slack message, or an
//! Alertmanager v2 alert. 2xx is success; 408, 429 and 5xx are retried;
//! other 4xx are refused without retry.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpStream;

use super::SendError;
use super::config::{Body, Kind, Sink, TlsSettings};
use crate::alert::Alert;
use crate::detect::rules::{RULES, runbook_url};

/// Largest response body read (then the connection is dropped).
const MAX_RESPONSE: usize = 64 * 1024;

pub struct WebhookSender {
    uri: Uri,
    body: Body,
    authorization: Option<HeaderValue>,
    tls: Option<(tokio_rustls::TlsConnector, TlsSettings)>,
    generator_url: Option<String>,
}

fn title(rule: &str) -> &str {
    RULES
        .iter()
        .find(|r| r.id == rule)
        .map_or(rule, |r| r.title)
}

/// Slack's mrkdwn control characters, escaped as Slack asks (`&`, `<`, `>`):
/// alert fields come from the attacker and must not become mentions or links.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// At most `max` characters (Slack refuses a block whose text is longer:
/// header 150, section 3000, field 2000), with `…` when cut.
fn cut(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `{"text": ..., "blocks": [...]}` for a Slack incoming webhook; every
/// block within Slack's length limits, so a long attacker-made field cannot
/// get the message refused.
pub fn slack_body(a: &Alert) -> serde_json::Value {
    let src = a
        .source_ip
        .map(|i| i.to_string())
        .unwrap_or_else(|| "?".into());
    let text = cut(
        format!(
            "[{}] {} {}: {} (user {} from {})",
            a.severity.as_str().to_uppercase(),
            a.rule,
            slack_escape(title(&a.rule)),
            slack_escape(&a.reason),
            slack_escape(&a.identity.username),
            src
        ),
        3000,
    );
    let field = |name: &str, v: String| json!({"type": "mrkdwn", "text": cut(format!("*{name}*\n{v}"), 2000)});
    let mut fields = vec![
        field("Severity", a.severity.as_str().to_owned()),
        field("Rule", format!("{} ({})", a.rule, a.analytic)),
        field("User", slack_escape(&a.identity.username)),
        field("Source", src),
        field(
            "Request",
            format!(
                "{} {}",
                slack_escape(&a.request.verb),
                slack_escape(&a.request.request_uri)
            ),
        ),
    ];
    if let Some(c) = &a.credential_id {
        fields.push(field("Credential", slack_escape(c)));
    }
    json!({
        "text": text,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(format!("{} {}", a.rule, title(&a.rule)), 150), "emoji": false}},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(slack_escape(&a.reason), 3000)}},
            {"type": "section", "fields": fields},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": cut(format!("alert {} · {} · <{}|runbook>", slack_escape(&a.id), a.time.to_rfc3339(), runbook_url(&a.rule)), 3000)}
            ]}
        ]
    })
}

/// One Alertmanager v2 alert (`POST /api/v2/alerts` takes an array of these).
pub fn alertmanager_body(a: &Alert, generator_url: Option<&str>) -> serde_json::Value {
    let generator = match generator_url {
        Some(base) => format!("{base}#alert={}", a.id),
        None => runbook_url(&a.rule),
    };
    json!([{
        "labels": {
            "alertname": format!("credtrail {}", a.rule),
            "severity": a.severity.as_str(),
            "rule": a.rule,
            "analytic": a.analytic,
            "alert_id": a.id,
            "source": "credtrail",
        },
        "annotations": {
            "summary": title(&a.rule),
            "description": a.reason,
            "runbook_url": runbook_url(&a.rule),
            "user": a.identity.username,
            "source_ip": a.source_ip.map(|i| i.to_string()).unwrap_or_default(),
            "credential_id": a.credential_id.clone().unwrap_or_default(),
        },
        "startsAt": a.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "generatorURL": generator,
    }])
}

impl WebhookSender {
    pub fn new(s: &Sink) -> Result<Self, String> {
        let Kind::Webhook {
            url,
            body,
            authorization,
            tls,
            generator_url,
        } = &s.kind
        else {
            return Err("not a webhook sink".into());
        };
        // Parsed once at load too; the message never shows the URL (it may be secret).
        let uri: Uri = url
            .parse()
            .map_err(|_| "the URL does not parse".to_owned())?;
        let tls = if uri.scheme_str() == Some("https") {
            Some((super::tls::connector(tls)?, tls.clone()))
        } else {
            None
        };
        let authorization = authorization
            .as_deref()
            .map(|a| {
                let mut v = HeaderValue::from_str(a)
                    .map_err(|_| "token_file: not a valid header value".to_owned())?;
                v.set_sensitive(true);
                Ok::<_, String>(v)
            })
            .transpose()?;
        Ok(Self {
            uri,
            body: *body,
            authorization,
            tls,
            generator_url: generator_url.clone(),
        })
    }

    /// The body for one alert.
    pub fn body(&self, a: &Alert) -> Vec<u8> {
        match self.body {
            Body::Json(f) => f.record(a).into_bytes(),
            Body::Slack => slack_body(a).to_string().into_bytes(),
            Body::Alertmanager => alertmanager_body(a, self.generator_url.as_deref())
                .to_string()
                .into_bytes(),
        }
    }

    /// Sends one alert. Errors name the host, never the path or query (they may hold a secret).
    pub async fn send(&mut self, a: &Alert) -> Result<(), SendError> {
        let host = self.uri.host().unwrap_or_default().to_owned();
        let https = self.tls.is_some();
        let port = self.uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tcp = TcpStream::connect((bare, port))
            .await
            .map_err(|e| SendError::Retry(format!("connecting to {host}:{port}: {}", e.kind())))?;
        let _ = tcp.set_nodelay(true);
        let io: Box<dyn hyper_io::Io> = match &self.tls {
            None => Box::new(tcp),
            Some((c, t)) => {
                let name = super::tls::server_name(t, bare).map_err(SendError::Refused)?;
                Box::new(
                    c.connect(name, tcp)
                        .await
                        .map_err(|e| SendError::Retry(format!("TLS with {host}:{port}: {e}")))?,
                )
            }
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| SendError::Retry(format!("HTTP with {host}:{port}: {e}")))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let path = self
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let authority = self
            .uri
            .authority()
            .map_or(host.clone(), |a| a.as_str().to_owned());
        let mut req = Request::post(path)
            .header(HOST, authority)
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("credtrail-aggregator/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(v) = &self.authorization {
            req = req.header(AUTHORIZATION, v.clone());
        }
        let req = req
            .body(Full::new(Bytes::from(self.body(a))))
            .map_err(|_| SendError::Refused("building the request".into()))?;
        let resp = sender.send_request(req).await;
        let result = match resp {
            Err(e) => Err(SendError::Retry(format!("HTTP with {host}:{port}: {e}"))),
            Ok(resp) => {
                let status = resp.status();
                // Read (a bounded part of) the answer so the server sees it taken.
                let _ = http_body_util::Limited::new(resp.into_body(), MAX_RESPONSE)
                    .collect()
                    .await;
                if status.is_success() {
                    Ok(())
                } else if status.is_server_error()
                    || status.as_u16() == 429
                    || status.as_u16() == 408
                {
                    Err(SendError::Retry(format!("{host}:{port} answered {status}")))
                } else {
                    Err(SendError::Refused(format!(
                        "{host}:{port} answered {status}"
                    )))
                }
            }
        };
        driver.abort();
        result
    }
}

mod hyper_io {
    /// A byte stream hyper can run HTTP/1 over (TCP or TLS).
    pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_body_escapes_attacker_text() {
        let mut a = crate::encode::cef::tests::alert();
        a.identity.username = "<!channel> & <https://evil|click>".into();
        let v = slack_body(&a);
        let s = v.to_string();
        assert!(!s.contains("<!channel>"), "{s}");
        assert!(s.contains("&lt;!channel&gt; &amp;"), "{s}");
        assert!(
            v["text"]
                .as_str()
                .unwrap()
                .starts_with("[CRITICAL] CT1579-001")
        );
        assert_eq!(v["blocks"][0]["type"], "header");
    }

    #[tokio::test]
    async fn errors_name_the_host_never_the_secret_path_or_token() {
        // A port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let sink = Sink {
            name: "s".into(),
            kind: Kind::Webhook {
                url: format!("http://127.0.0.1:{port}/services/T0/B0/s3cret-path?k=s3cret-q"),
                body: Body::Slack,
                authorization: Some("Bearer s3cret-token".into()),
                tls: TlsSettings {
                    ca_file: None,
                    server_name: None,
                },
                generator_url: None,
            },
            bounds: super::super::Bounds::default(),
        };
        let mut w = WebhookSender::new(&sink).unwrap();
        let e = w
            .send(&crate::encode::cef::tests::alert())
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("127.0.0.1:{port}")), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        assert!(!format!("{sink:?}").contains("s3cret"));
    }

    #[test]
    fn slack_blocks_stay_within_slacks_limits() {
        let mut a = crate::encode::cef::tests::alert();
        a.reason = "r".repeat(10_000);
        a.identity.username = "<".repeat(5_000);
        let v = slack_body(&a);
        let len = |v: &serde_json::Value| v.as_str().unwrap().chars().count();
        assert!(len(&v["text"]) <= 3000);
        assert!(len(&v["blocks"][0]["text"]["text"]) <= 150);
        assert!(len(&v["blocks"][1]["text"]["text"]) <= 3000);
        for f in v["blocks"][2]["fields"].as_array().unwrap() {
            assert!(len(&f["text"]) <= 2000);
        }
        assert!(
            v["blocks"][1]["text"]["text"]
                .as_str()
                .unwrap()
                .ends_with('…')
        );
    }

    #[test]
    fn alertmanager_body_is_one_v2_alert() {
        let a = crate::encode::cef::tests::alert();
        let v = alertmanager_body(&a, Some("https://credtrail.example.invalid/"));
        let x = &v[0];
        assert_eq!(x["labels"]["rule"], "CT1579-001");
        assert_eq!(x["labels"]["severity"], "critical");
        assert_eq!(x["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(
            x["generatorURL"],
            "https://credtrail.example.invalid/#alert=id-1"
        );
        assert!(
            x["annotations"]["runbook_url"]
                .as_str()
                .unwrap()
                .contains("ct1579-001")
        );
    }
}
