//! The cache in front of `TokenReview` (query API in `--api-kube-auth` mode,
//! agents' tokens with `--agent-auth token` and no JWKS).
//!
//! Without it every connection with a bad token costs one request to the API
//! server, which a hostile client can repeat at will. Here:
//!
//! - **keyed by SHA-256** of the audiences and the token, never the token;
//! - **answers kept apart**: accepted tokens for at most the positive TTL
//!   (60 s) *and* never past the token's own `exp` (read from a JWT's
//!   payload, unverified: it can only shorten the stay); refusals for the
//!   negative TTL (10 s), so a token that becomes valid (an issuer key the
//!   API server learns, a not-before that passes) is let in within it;
//! - **bounded**: at most [`CACHE_MAX`] entries of each kind, the oldest
//!   evicted first, so a flood of distinct bad tokens evicts only refusals;
//! - **one review per token at a time**: concurrent requests with the same
//!   token wait for the one review in flight (50 connections with one bad
//!   token: one `TokenReview`); a review that failed (API server away) is
//!   shared with its waiters but not kept;
//! - **at most [`MAX_CONCURRENT_REVIEWS`] reviews in flight**: a flood of
//!   distinct bad tokens (each its own review) queues, at most
//!   [`QUEUE_WAIT`], instead of piling onto the API server;
//! - **counted**: `credtrail_token_review_cache_total{result, answer}`
//!   (`hit`, `miss` — one `TokenReview` sent —, `shared`; `valid`,
//!   `refused`, `error`).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hashlink::LinkedHashMap;
use sha2::{Digest as _, Sha256};

use super::kube::KubeUser;

/// How long an accepted token is kept (never past its `exp`).
pub const POSITIVE_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is kept (short: a token that becomes valid gets in soon).
pub const NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// Most cached answers of each kind.
pub const CACHE_MAX: usize = 4096;
/// Most TokenReviews in flight at once (per API-server client).
pub const MAX_CONCURRENT_REVIEWS: usize = 32;
/// Longest wait for a turn to send a review (then: unavailable, not cached).
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A bounded map of answers that expire; the oldest insertion goes first.
pub(crate) struct Cache<K, V> {
    pub(crate) map: LinkedHashMap<K, (V, Instant)>,
}

impl<K: Hash + Eq + Clone, V: Clone> Cache<K, V> {
    pub(crate) fn new() -> Self {
        Self {
            map: LinkedHashMap::new(),
        }
    }

    pub(crate) fn get(&mut self, k: &K) -> Option<V> {
        match self.map.get(k) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                self.map.remove(k);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(&mut self, k: K, v: V, ttl: Duration) {
        let now = Instant::now();
        self.map.remove(&k);
        while self.map.len() >= CACHE_MAX {
            self.map.pop_front();
        }
        // Expired entries at the front go too (amortized: each goes once).
        while self
            .map
            .front()
            .is_some_and(|(_, (_, until))| *until <= now)
        {
            self.map.pop_front();
        }
        self.map.insert(k, (v, now + ttl));
    }
}

/// A review's outcome: the user, `None` (refused), or why it failed.
pub type Answer = Result<Option<KubeUser>, String>;

type Cell = Arc<tokio::sync::OnceCell<Answer>>;

static COUNTS: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
const LABELS: [(&str, &str); 7] = [
    ("hit", "valid"),
    ("hit", "refused"),
    ("miss", "valid"),
    ("miss", "refused"),
    ("miss", "error"),
    ("shared", "valid"),
    ("shared", "refused"),
];

fn count(result: &str, answer: &Answer) {
    let a = match answer {
        Ok(Some(_)) => "valid",
        Ok(None) => "refused",
        Err(_) => "error",
    };
    if let Some(i) = LABELS.iter().position(|l| *l == (result, a)) {
        COUNTS[i].fetch_add(1, Ordering::Relaxed);
    }
}

/// `(result, answer, count)` of every cache outcome so far (process-wide).
pub fn figures() -> Vec<(&'static str, &'static str, u64)> {
    LABELS
        .iter()
        .zip(&COUNTS)
        .map(|((r, a), c)| (*r, *a, c.load(Ordering::Relaxed)))
        .collect()
}

/// The key of one review: SHA-256 over the audiences and the token.
fn key(token: &str, audiences: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for a in audiences {
        h.update((a.len() as u64).to_le_bytes());
        h.update(a.as_bytes());
    }
    h.update(u64::MAX.to_le_bytes());
    h.update(token.as_bytes());
    h.finalize().into()
}

/// The `exp` claim of a JWT, unverified (only ever used to shorten a stay).
fn unverified_exp(token: &str) -> Option<i64> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<i64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Exp>(&bytes).ok()?.exp
}

/// The review cache of one API-server client.
pub struct ReviewCache {
    valid: Mutex<Cache<[u8; 32], KubeUser>>,
    refused: Mutex<Cache<[u8; 32], ()>>,
    inflight: Mutex<HashMap<[u8; 32], Cell>>,
    /// Reviews sent at once: a flood of distinct bad tokens (each one its
    /// own review) queues here instead of piling onto the API server.
    sending: tokio::sync::Semaphore,
    positive_ttl: Duration,
    negative_ttl: Duration,
}

/// Takes a finished (or abandoned) review out of the in-flight table.
struct Inflight<'a> {
    table: &'a Mutex<HashMap<[u8; 32], Cell>>,
    key: [u8; 32],
    cell: Cell,
}

impl Drop for Inflight<'_> {
    fn drop(&mut self) {
        let mut t = lock(self.table);
        let ours = t.get(&self.key).is_some_and(|c| Arc::ptr_eq(c, &self.cell));
        // Done, or nobody else waits on it (its caller went away).
        if ours && (self.cell.initialized() || Arc::strong_count(&self.cell) <= 2) {
            t.remove(&self.key);
        }
    }
}

impl Default for ReviewCache {
    fn default() -> Self {
        Self::new(POSITIVE_TTL, NEGATIVE_TTL)
    }
}

impl ReviewCache {
    pub fn new(positive_ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            valid: Mutex::new(Cache::new()),
            refused: Mutex::new(Cache::new()),
            inflight: Mutex::new(HashMap::new()),
            sending: tokio::sync::Semaphore::new(MAX_CONCURRENT_REVIEWS),
            positive_ttl,
            negative_ttl,
        }
    }

    fn cached(&self, k: &[u8; 32]) -> Option<Option<KubeUser>> {
        if let Some(u) = lock(&self.valid).get(k) {
            return Some(Some(u));
        }
        lock(&self.refused).get(k).map(|()| None)
    }

    fn keep(&self, k: [u8; 32], token: &str, answer: &Answer) {
        match answer {
            Ok(Some(user)) => {
                let ttl = match unverified_exp(token) {
                    Some(exp) => {
                        let left = exp.saturating_sub(chrono::Utc::now().timestamp());
                        let Ok(left) = u64::try_from(left) else {
                            return;
                        };
                        self.positive_ttl.min(Duration::from_secs(left))
                    }
                    None => self.positive_ttl,
                };
                if !ttl.is_zero() {
                    lock(&self.valid).put(k, user.clone(), ttl);
                }
            }
            Ok(None) => lock(&self.refused).put(k, (), self.negative_ttl),
            Err(_) => {}
        }
    }

    /// The answer for `token` and `audiences`: cached, or shared with a
    /// review of the same token in flight, or from `review` (run once).
    pub async fn get_or_review<F>(&self, token: &str, audiences: &[&str], review: F) -> Answer
    where
        F: Future<Output = Answer>,
    {
        let k = key(token, audiences);
        if let Some(hit) = self.cached(&k) {
            let answer = Ok(hit);
            count("hit", &answer);
            return answer;
        }
        // The only other handle on the cell is the table's (see `Inflight`).
        let inflight = Inflight {
            table: &self.inflight,
            key: k,
            cell: lock(&self.inflight).entry(k).or_default().clone(),
        };
        let ran = AtomicBool::new(false);
        let answer = inflight
            .cell
            .get_or_init(|| async {
                ran.store(true, Ordering::Relaxed);
                let a = match tokio::time::timeout(QUEUE_WAIT, self.sending.acquire()).await {
                    Ok(Ok(_permit)) => review.await,
                    _ => Err(format!(
                        "{MAX_CONCURRENT_REVIEWS} TokenReviews already in flight for {QUEUE_WAIT:?}"
                    )),
                };
                self.keep(k, token, &a);
                a
            })
            .await
            .clone();
        count(
            if ran.load(Ordering::Relaxed) {
                "miss"
            } else {
                "shared"
            },
            &answer,
        );
        answer
    }

    /// Entries held (valid, refused, in flight).
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            lock(&self.valid).map.len(),
            lock(&self.refused).map.len(),
            lock(&self.inflight).len(),
        )
    }
}

/// `credtrail_token_review_cache_total` at scrape time.
#[derive(Debug)]
pub struct ReviewCacheCollector;

impl prometheus_client::collector::Collector for ReviewCacheCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::counter::Counter;
        use prometheus_client::metrics::family::Family;
        let f = Family::<Vec<(String, String)>, Counter>::default();
        for (result, answer, n) in figures() {
            f.get_or_create(&vec![
                ("result".to_owned(), result.to_owned()),
                ("answer".to_owned(), answer.to_owned()),
            ])
            .inc_by(n);
        }
        f.encode(encoder.encode_descriptor(
            "token_review_cache",
            "TokenReview answers: from the cache (hit), from one TokenReview sent (miss), or shared with a review of the same token in flight (shared); by answer",
            None,
            f.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_is_bounded_and_expires() {
        let mut c: Cache<u32, bool> = Cache::new();
        for i in 0..(CACHE_MAX as u32 + 10) {
            c.put(i, true, POSITIVE_TTL);
        }
        assert_eq!(c.map.len(), CACHE_MAX);
        assert_eq!(c.get(&0), None, "the oldest went first");
        assert_eq!(c.get(&(CACHE_MAX as u32 + 9)), Some(true));
        c.put(1, true, Duration::ZERO);
        assert_eq!(c.get(&1), None);
    }

    fn user(name: &str) -> KubeUser {
        KubeUser {
            username: name.into(),
            ..Default::default()
        }
    }

    fn jwt_with_exp(exp: i64) -> String {
        use base64::Engine as _;
        let b = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            b("{\"alg\":\"ES256\"}"),
            b(&format!("{{\"exp\":{exp}}}"))
        )
    }

    #[tokio::test]
    async fn concurrent_requests_with_one_token_share_one_review() {
        let c = Arc::new(ReviewCache::default());
        let reviews = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (c, reviews) = (c.clone(), reviews.clone());
                tokio::spawn(async move {
                    c.get_or_review("bad-token", &[], async {
                        reviews.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(None)
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(None));
        }
        assert_eq!(reviews.load(Ordering::SeqCst), 1);
        assert_eq!(c.sizes(), (0, 1, 0), "one refusal kept, nothing in flight");
        // Another audience is another question.
        let a = c.get_or_review("bad-token", &["credtrail"], async { Ok(Some(user("x"))) });
        assert_eq!(a.await, Ok(Some(user("x"))));
    }

    #[tokio::test]
    async fn refusals_expire_errors_are_not_kept_and_valid_tokens_not_past_exp() {
        let c = ReviewCache::new(Duration::from_secs(60), Duration::from_millis(100));
        assert_eq!(
            c.get_or_review("t", &[], async { Ok(None) }).await,
            Ok(None)
        );
        assert_eq!(
            c.get_or_review("t", &[], async { Ok(Some(user("late"))) })
                .await,
            Ok(None),
            "within the negative TTL the refusal stands"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            c.get_or_review("t", &[], async { Ok(Some(user("late"))) })
                .await,
            Ok(Some(user("late"))),
            "past it the token is reviewed again"
        );
        let e = c
            .get_or_review("u", &[], async { Err("down".into()) })
            .await;
        assert!(e.is_err());
        assert_eq!(
            c.get_or_review("u", &[], async { Ok(None) }).await,
            Ok(None),
            "a failed review is not kept"
        );
        let expired = jwt_with_exp(chrono::Utc::now().timestamp() - 5);
        c.get_or_review(&expired, &[], async { Ok(Some(user("e"))) })
            .await
            .unwrap();
        let soon = jwt_with_exp(chrono::Utc::now().timestamp() + 3600);
        c.get_or_review(&soon, &[], async { Ok(Some(user("s"))) })
            .await
            .unwrap();
        assert_eq!(
            c.sizes().0,
            2,
            "an expired token is not kept: {:?}",
            c.sizes()
        );
    }

    #[tokio::test]
    async fn distinct_tokens_never_have_more_than_the_cap_of_reviews_in_flight() {
        let c = Arc::new(ReviewCache::default());
        let (now, peak) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks: Vec<_> = (0..100)
            .map(|i| {
                let (c, now, peak) = (c.clone(), now.clone(), peak.clone());
                tokio::spawn(async move {
                    c.get_or_review(&format!("bad-{i}"), &[], async {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        Ok(None)
                    })
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(None));
        }
        assert_eq!(peak.load(Ordering::SeqCst), MAX_CONCURRENT_REVIEWS as u64);
        assert_eq!(c.sizes(), (0, 100, 0));
    }

    #[tokio::test]
    async fn an_abandoned_review_leaves_nothing_behind() {
        let c = ReviewCache::default();
        let slow = c.get_or_review("t", &[], std::future::pending());
        assert!(
            tokio::time::timeout(Duration::from_millis(50), slow)
                .await
                .is_err()
        );
        assert_eq!(c.sizes(), (0, 0, 0));
    }
}
