//! Syslog delivery: RFC 5424 messages framed by octet counting (RFC 6587
//! §3.4.1) over one kept TCP or TLS connection, the alert as CEF in MSG.

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::SendError;
use super::config::{Kind, Sink, TlsSettings};
use crate::alert::{Alert, Severity};

/// Longest message sent (RFC 5424 receivers must take 480, should take
/// 2048; rsyslog's default is 8k): longer CEF is cut at a character boundary.
pub const MAX_MESSAGE: usize = 8 * 1024 - 64;

type Conn = Box<dyn AsyncWrite + Unpin + Send + Sync>;

pub struct SyslogSender {
    address: String,
    tls: Option<(tokio_rustls::TlsConnector, TlsSettings)>,
    facility: u8,
    hostname: String,
    conn: Option<Conn>,
}

/// RFC 5424 severity of an alert.
pub fn syslog_severity(s: Severity) -> u8 {
    match s {
        Severity::Critical => 2,
        Severity::High => 3,
        Severity::Medium => 4,
        Severity::Low => 5,
        Severity::Info => 6,
    }
}

/// PRINTUSASCII only, at most `max` characters, `-` when empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// One alert as an RFC 5424 message (without framing).
pub fn message(a: &Alert, facility: u8, hostname: &str) -> String {
    let pri = u32::from(facility) * 8 + u32::from(syslog_severity(a.severity));
    let mut cef = crate::encode::cef::cef_line(a);
    if cef.len() > MAX_MESSAGE {
        let mut cut = MAX_MESSAGE;
        while !cef.is_char_boundary(cut) {
            cut -= 1;
        }
        cef.truncate(cut);
    }
    format!(
        "<{pri}>1 {} {} credtrail - {} - {cef}",
        a.time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        header_field(hostname, 255),
        header_field(&a.rule, 32),
    )
}

/// Octet-counting frame: `LEN SP MSG`.
pub fn frame(msg: &str) -> Vec<u8> {
    let mut out = format!("{} ", msg.len()).into_bytes();
    out.extend_from_slice(msg.as_bytes());
    out
}

impl SyslogSender {
    pub fn new(s: &Sink) -> Result<Self, String> {
        let Kind::Syslog {
            address,
            tls,
            facility,
            hostname,
        } = &s.kind
        else {
            return Err("not a syslog sink".into());
        };
        let tls = match tls {
            Some(t) => Some((super::tls::connector(t)?, t.clone())),
            None => None,
        };
        Ok(Self {
            address: address.clone(),
            tls,
            facility: *facility,
            hostname: hostname.clone(),
            conn: None,
        })
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let tcp = TcpStream::connect(&self.address).await.map_err(|e| {
            SendError::Retry(format!("connecting to {}: {}", self.address, e.kind()))
        })?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some((connector, t)) => {
                let host = self
                    .address
                    .rsplit_once(':')
                    .map_or(self.address.as_str(), |(h, _)| h);
                let name = super::tls::server_name(t, host).map_err(SendError::Refused)?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError::Retry(format!("TLS with {}: {e}", self.address)))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// Sends one alert, (re)connecting when needed; a write error drops the
    /// connection so the retry reconnects.
    pub async fn send(&mut self, a: &Alert) -> Result<(), SendError> {
        if self.conn.is_none() {
            self.conn = Some(self.connect().await?);
        }
        let bytes = frame(&message(a, self.facility, &self.hostname));
        let Some(conn) = self.conn.as_mut() else {
            return Err(SendError::Retry("no connection".into()));
        };
        let r = async {
            conn.write_all(&bytes).await?;
            conn.flush().await
        }
        .await;
        if let Err(e) = r {
            self.conn = None;
            return Err(SendError::Retry(format!(
                "writing to {}: {}",
                self.address,
                e.kind()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_message_with_octet_counting() {
        let a = crate::encode::cef::tests::alert();
        let m = message(&a, 4, "agg host");
        // critical (2) + facility 4 * 8.
        assert!(
            m.starts_with("<34>1 2023-11-14T22:13:20.000Z agghost credtrail - CT1579-001 - CEF:0|"),
            "{m}"
        );
        let f = frame(&m);
        let (len, rest) = std::str::from_utf8(&f).unwrap().split_once(' ').unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), rest.len());
        assert!(!m.contains('\n'));
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let mut a = crate::encode::cef::tests::alert();
        a.reason = "é".repeat(10_000);
        let m = message(&a, 4, "h");
        assert!(m.len() < MAX_MESSAGE + 200);
    }
}
