//! The soak's figures: rate, RSS (start, end, slope over the second half),
//! POST latency p99, errors; and the one-line report.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What the soak collected so far.
#[derive(Debug, Clone)]
pub struct Samples {
    eps_target: u64,
    minutes: f64,
    rss_start_kib: u64,
    /// `(seconds since start, KiB)`.
    rss: Vec<(f64, u64)>,
    latencies_ms: Vec<f64>,
    events: u64,
    errors: u64,
}

/// The figures of one report line.
#[derive(Debug, Clone, PartialEq)]
pub struct Figures {
    pub minutes: f64,
    pub eps_target: u64,
    pub eps_achieved: f64,
    pub rss_start_mib: f64,
    pub rss_end_mib: f64,
    pub rss_slope_kib_per_min: f64,
    pub p99_ms: f64,
    pub p50_ms: f64,
    pub errors: u64,
    pub events: u64,
}

impl Samples {
    pub fn new(eps_target: u64, minutes: f64) -> Self {
        Self {
            eps_target,
            minutes,
            rss_start_kib: 0,
            rss: Vec::new(),
            latencies_ms: Vec::new(),
            events: 0,
            errors: 0,
        }
    }

    pub fn start(&mut self, rss_kib: u64) {
        self.rss_start_kib = rss_kib;
        self.rss.push((0.0, rss_kib));
    }

    pub fn rss(&mut self, at: Duration, kib: u64) {
        if kib > 0 {
            self.rss.push((at.as_secs_f64(), kib));
        }
    }

    pub fn batch(&mut self, ms: f64, events: u64) {
        self.latencies_ms.push(ms);
        self.events += events;
    }

    pub fn error(&mut self) {
        self.errors += 1;
    }

    /// How many batches were answered so far (a mark for [`Self::p99_since`]).
    pub fn batches(&self) -> usize {
        self.latencies_ms.len()
    }

    /// The p99 POST latency of the batches answered after `mark`.
    pub fn p99_since(&self, mark: usize) -> f64 {
        percentile(self.latencies_ms.get(mark..).unwrap_or(&[]), 0.99)
    }

    /// The figures after `elapsed` of traffic.
    pub fn figures(&self, elapsed: Duration) -> Figures {
        let secs = elapsed.as_secs_f64().max(0.001);
        let half = secs / 2.0;
        let second_half: Vec<(f64, f64)> = self
            .rss
            .iter()
            .filter(|(t, _)| *t >= half)
            .map(|(t, k)| (*t / 60.0, *k as f64))
            .collect();
        Figures {
            minutes: if elapsed.as_secs_f64() + 1.0 >= self.minutes * 60.0 {
                self.minutes
            } else {
                secs / 60.0
            },
            eps_target: self.eps_target,
            eps_achieved: self.events as f64 / secs,
            rss_start_mib: self.rss_start_kib as f64 / 1024.0,
            rss_end_mib: self.rss.last().map_or(0.0, |(_, k)| *k as f64 / 1024.0),
            rss_slope_kib_per_min: slope(&second_half),
            p99_ms: percentile(&self.latencies_ms, 0.99),
            p50_ms: percentile(&self.latencies_ms, 0.5),
            errors: self.errors,
            events: self.events,
        }
    }
}

impl Figures {
    /// The report line (`last`: the final one).
    pub fn line(&self, last: bool) -> String {
        let minutes = if last || self.minutes.fract() == 0.0 {
            format!("{}", self.minutes)
        } else {
            format!("{:.1}", self.minutes)
        };
        format!(
            "soak minutes={minutes} eps_target={} eps_achieved={:.0} rss_start_mib={:.1} rss_end_mib={:.1} rss_slope_kib_per_min={:.0} p99_ms={:.1} errors={}",
            self.eps_target,
            self.eps_achieved,
            self.rss_start_mib,
            self.rss_end_mib,
            self.rss_slope_kib_per_min,
            self.p99_ms,
            self.errors
        )
    }
}

/// Least-squares slope of `(x, y)` points; 0 with fewer than two.
pub fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// The `q` quantile (nearest rank) of `v`; 0 when empty.
pub fn percentile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((q * s.len() as f64).ceil() as usize).clamp(1, s.len());
    s[rank - 1]
}

/// A Prometheus histogram's figures in `/metrics` text: the upper bound of
/// the bucket holding each quantile of `qs` (`+Inf` as infinity) and the
/// mean; None when the family is missing or empty.
pub fn histogram_figures(text: &str, name: &str, qs: &[f64]) -> Option<(Vec<f64>, f64)> {
    let bucket = format!("{name}_bucket{{le=\"");
    let mut buckets: Vec<(f64, f64)> = Vec::new();
    let (mut sum, mut count) = (None, None);
    for l in text.lines() {
        if let Some(rest) = l.strip_prefix(&bucket) {
            let (le, n) = rest.split_once("\"}")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            buckets.push((le, n.trim().parse().ok()?));
        } else if let Some(v) = l.strip_prefix(&format!("{name}_sum ")) {
            sum = v.trim().parse::<f64>().ok();
        } else if let Some(v) = l.strip_prefix(&format!("{name}_count ")) {
            count = v.trim().parse::<f64>().ok();
        }
    }
    let (sum, count) = (sum?, count.filter(|c| *c > 0.0)?);
    let at = |q: f64| {
        buckets
            .iter()
            .find(|(_, n)| *n >= q * count)
            .map_or(f64::INFINITY, |(le, _)| *le)
    };
    Some((qs.iter().map(|q| at(*q)).collect(), sum / count))
}

/// `GET /metrics` of the aggregator's HTTP API on loopback.
pub async fn fetch_metrics(port: u16) -> anyhow::Result<String> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .await?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out)).await??;
    anyhow::ensure!(
        out.starts_with("HTTP/1.") && out.contains(" 200 "),
        "metrics: {}",
        out.lines().next().unwrap_or("")
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_quantiles_are_bucket_bounds() {
        let text = "# TYPE w histogram\nw_sum 3.0\nw_count 10\nw_bucket{le=\"0.001\"} 5\nw_bucket{le=\"0.002\"} 9\nw_bucket{le=\"+Inf\"} 10\nx_sum 1\n";
        let (q, mean) = histogram_figures(text, "w", &[0.5, 0.9, 0.99]).unwrap();
        assert_eq!(q, vec![0.001, 0.002, f64::INFINITY]);
        assert!((mean - 0.3).abs() < 1e-9);
        assert!(
            histogram_figures(text, "x", &[0.5]).is_none(),
            "no buckets, no count"
        );
        assert!(histogram_figures("w_sum 0\nw_count 0\n", "w", &[0.5]).is_none());
    }

    #[test]
    fn slope_and_percentile() {
        let pts: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 3.0 * f64::from(i) + 7.0))
            .collect();
        assert!((slope(&pts) - 3.0).abs() < 1e-9);
        assert_eq!(slope(&pts[..1]), 0.0);
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&[], 0.99), 0.0);
    }

    #[test]
    fn the_line_has_the_documented_shape() {
        let mut s = Samples::new(3000, 30.0);
        s.start(20 * 1024);
        s.batch(4.0, 300);
        s.rss(Duration::from_secs(1200), 30 * 1024);
        s.rss(Duration::from_secs(1800), 30 * 1024);
        let line = s.figures(Duration::from_secs(1800)).line(true);
        assert_eq!(
            line,
            "soak minutes=30 eps_target=3000 eps_achieved=0 rss_start_mib=20.0 rss_end_mib=30.0 rss_slope_kib_per_min=0 p99_ms=4.0 errors=0"
        );
    }
}
