//! The HTTP/JSON query API against a real in-process aggregator: alerts are
//! raised by GC's real pipeline from audit events, then read over HTTP.

use crate::api_support;

use std::time::Duration;

use api_support::{
    Api, BUILDER, base_time, grant_admin_in_namespace, grant_to_anonymous, token_used,
};
use chrono::Duration as Minutes;
use hyper::{Method, StatusCode};
use serde_json::Value;

/// Seeds a mix of AN1579 and AN1547 alerts; returns how many were raised.
async fn seed(api: &Api) -> usize {
    let t0 = base_time();
    let mut events = Vec::new();
    for i in 0..6 {
        events.push(grant_to_anonymous(
            &format!("aud-anon-{i}"),
            &format!("anon-admin-{i}"),
            &format!("mallory-{i}"),
            &format!("127.0.66.{}", i + 1),
            t0 + Minutes::minutes(i),
        ));
    }
    for (i, ns) in ["team-a", "team-a", "team-b", "team-b"].iter().enumerate() {
        events.push(grant_admin_in_namespace(
            &format!("aud-rb-{i}"),
            ns,
            &format!("ops-admin-{i}"),
            "bob",
            &format!("carol-{i}"),
            "127.0.77.1",
            t0 + Minutes::minutes(10 + i as i64),
        ));
    }
    for i in 0..3 {
        let mut e = token_used(
            &format!("aud-tok-{i}"),
            &BUILDER,
            // One source each: repeats from one source extend one alert.
            &format!("127.0.99.{}", 9 + i),
            t0 + Minutes::minutes(20 + i),
        );
        if i == 2 {
            // Denied: a lower severity than the allowed ones.
            e["responseStatus"]["code"] = 403.into();
            e["annotations"]["authorization.k8s.io/decision"] = "forbid".into();
        }
        events.push(e);
    }
    let raised = api.ingest(events).await;
    assert!(
        raised >= 6,
        "the six grants to system:anonymous must alert, got {raised}"
    );
    raised
}

fn alerts(v: &Value) -> Vec<Value> {
    v["alerts"].as_array().expect("alerts array").clone()
}

fn ids(v: &[Value]) -> Vec<String> {
    v.iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect()
}

async fn all_alerts(api: &Api) -> Vec<Value> {
    alerts(
        &api.get_json("/api/v1/alerts?page_size=1000", StatusCode::OK)
            .await,
    )
}

#[tokio::test]
async fn http_lists_alerts_newest_first_and_pages_without_gaps() {
    let api = Api::start().await;
    let raised = seed(&api).await;
    let all = all_alerts(&api).await;
    assert_eq!(all.len(), raised, "every raised alert is listed once");
    let times: Vec<&str> = all.iter().map(|a| a["time"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(times, sorted, "newest first");
    // Every alert links its rule's runbook section.
    for a in &all {
        let rule = a["rule"].as_str().unwrap();
        let url = a["runbook_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no runbook_url: {a}"));
        assert!(
            url.ends_with(&format!("docs/RUNBOOKS.md#{}", rule.to_ascii_lowercase())),
            "{url}"
        );
        let one = api
            .get_json(
                &format!("/api/v1/alerts/{}", a["id"].as_str().unwrap()),
                StatusCode::OK,
            )
            .await;
        assert_eq!(one["runbook_url"], a["runbook_url"]);
    }

    // Walk pages of 4: same alerts, same order, no duplicates.
    let mut walked = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let path = if token.is_empty() {
            "/api/v1/alerts?page_size=4".to_owned()
        } else {
            format!("/api/v1/alerts?page_size=4&page_token={token}")
        };
        let page = api.get_json(&path, StatusCode::OK).await;
        let items = alerts(&page);
        assert!(items.len() <= 4);
        walked.extend(items);
        pages += 1;
        match page["next_page_token"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
        assert!(pages < 100, "paging does not terminate");
    }
    assert_eq!(ids(&walked), ids(&all));
    assert_eq!(pages, raised.div_ceil(4));
}

#[tokio::test]
async fn http_filters_select_exactly_the_matching_alerts() {
    let api = Api::start().await;
    seed(&api).await;
    let all = all_alerts(&api).await;
    let t0 = base_time();

    type Pred = Box<dyn Fn(&Value) -> bool>;
    let since = (t0 + Minutes::minutes(3)).to_rfc3339();
    let until = (t0 + Minutes::minutes(12)).to_rfc3339();
    let cases: Vec<(String, Pred)> = vec![
        (
            "analytic=AN1579".into(),
            Box::new(|a| a["analytic"] == "AN1579"),
        ),
        (
            "min_severity=critical".into(),
            Box::new(|a| a["severity"] == "critical"),
        ),
        (
            "identity=mallory-2".into(),
            Box::new(|a| a["identity"]["username"] == "mallory-2"),
        ),
        (
            "source_ip=127.0.66.4".into(),
            Box::new(|a| a["source_ip"] == "127.0.66.4"),
        ),
        (
            "namespace=team-a".into(),
            Box::new(|a| a["request"]["namespace"] == "team-a"),
        ),
        (
            "credential_id=JTI%3D5d3c8d2e-1f00-4a11-9c22-000000000042".into(),
            Box::new(|a| a["credential_id"] == "JTI=5d3c8d2e-1f00-4a11-9c22-000000000042"),
        ),
        (
            "node=node-a".into(),
            Box::new(|a| {
                a["expected"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e["kind"] == "node" && e["value"] == "node-a")
                    || a["evidence"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|e| e["node"] == "node-a")
            }),
        ),
        (
            format!("since={}&until={}", urlenc(&since), urlenc(&until)),
            Box::new(move |a| {
                let t = chrono::DateTime::parse_from_rfc3339(a["time"].as_str().unwrap()).unwrap();
                t >= t0 + Minutes::minutes(3) && t < t0 + Minutes::minutes(12)
            }),
        ),
    ];
    for (query, pred) in cases {
        let want: Vec<Value> = all.iter().filter(|a| pred(a)).cloned().collect();
        assert!(
            !want.is_empty() && want.len() < all.len(),
            "{query}: the seed must make this filter discriminate ({} of {})",
            want.len(),
            all.len()
        );
        let got = alerts(
            &api.get_json(
                &format!("/api/v1/alerts?{query}&page_size=1000"),
                StatusCode::OK,
            )
            .await,
        );
        assert_eq!(ids(&got), ids(&want), "filter {query}");
    }

    // Rule: whatever rule the first alert has selects exactly that rule's alerts.
    let rule = all[0]["rule"].as_str().unwrap().to_owned();
    let got = alerts(
        &api.get_json(
            &format!("/api/v1/alerts?rule={rule}&page_size=1000"),
            StatusCode::OK,
        )
        .await,
    );
    let want: Vec<Value> = all
        .iter()
        .filter(|a| a["rule"] == rule.as_str())
        .cloned()
        .collect();
    assert_eq!(ids(&got), ids(&want), "filter rule={rule}");

    // Combined filters AND together.
    let got = alerts(
        &api.get_json(
            "/api/v1/alerts?analytic=AN1579&identity=bob&namespace=team-b",
            StatusCode::OK,
        )
        .await,
    );
    assert!(!got.is_empty());
    assert!(
        got.iter()
            .all(|a| a["identity"]["username"] == "bob" && a["request"]["namespace"] == "team-b")
    );
}

fn urlenc(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn http_get_one_alert_and_not_found() {
    let api = Api::start().await;
    seed(&api).await;
    let all = all_alerts(&api).await;
    let id = all[3]["id"].as_str().unwrap();
    let mut one = api
        .get_json(&format!("/api/v1/alerts/{id}"), StatusCode::OK)
        .await;
    // The detail adds the triage history (empty: never triaged).
    let history = one["triage"].as_object_mut().unwrap().remove("history");
    assert_eq!(history, Some(serde_json::json!([])));
    // The detail adds the listed activity (api/context.rs) to the list's fields.
    let o = one.as_object_mut().unwrap();
    assert!(o.remove("activity").is_some() && o.remove("activity_truncated").is_some());
    assert_eq!(one, all[3]);
    for key in [
        "rule",
        "analytic",
        "techniques",
        "severity",
        "identity",
        "source_class",
        "request",
        "audit_ids",
        "reason",
    ] {
        assert!(!one[key].is_null(), "alert carries {key}: {one}");
    }
    let missing = api
        .get_json("/api/v1/alerts/no-such-alert", StatusCode::NOT_FOUND)
        .await;
    assert_eq!(missing["code"], "not_found");
    assert!(missing["error"].as_str().unwrap().contains("no-such-alert"));
}

#[tokio::test]
async fn http_bad_filters_are_400_and_name_the_problem() {
    let api = Api::start().await;
    let cases = [
        ("/api/v1/alerts?min_severity=severe", "min_severity"),
        ("/api/v1/alerts?source_ip=10.0.0.300", "source_ip"),
        ("/api/v1/alerts?since=yesterday", "since"),
        (
            "/api/v1/alerts?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            "since",
        ),
        ("/api/v1/alerts?page_size=5000", "page_size"),
        ("/api/v1/alerts?page_token=%21%21", "page_token"),
        ("/api/v1/alerts?namspace=typo", "namspace"),
        ("/api/v1/export/alerts?format=xml", "format"),
        ("/api/v1/coverage?freshness_seconds=-1", "freshness_seconds"),
        (
            "/api/v1/bindings?high_privilege_only=maybe",
            "high_privilege_only",
        ),
    ];
    for (path, needle) in cases {
        let body = api.get_json(path, StatusCode::BAD_REQUEST).await;
        assert_eq!(body["code"], "invalid_argument", "{path}");
        let msg = body["error"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{path}: error {msg:?} should name {needle:?}"
        );
    }
    let (s, _) = api.get("/api/v1/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn http_live_stream_delivers_new_alerts_as_server_sent_events() {
    let api = Api::start().await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let uri = format!("http://{}/api/v1/alerts/stream?analytic=AN1579", api.http);
    let req = hyper::Request::get(uri)
        .header(
            "authorization",
            format!("Bearer {}", api_support::VIEWER_TOKEN),
        )
        .body(http_body_util::Empty::new())
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    // The subscription exists once the response head arrived; raise an alert now.
    let t = base_time();
    api.ingest(vec![grant_to_anonymous(
        "aud-live-1",
        "live-1",
        "eve",
        "127.0.55.5",
        t,
    )])
    .await;
    let mut text = String::new();
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        use http_body_util::BodyExt as _;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                text.push_str(std::str::from_utf8(&data).unwrap());
            }
            if let Some(block) = text.split("\n\n").find(|b| b.contains("event: alert")) {
                return block.to_owned();
            }
        }
        panic!("stream ended: {text}");
    })
    .await
    .expect("an alert event within 10 s");
    let data = got
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .expect("data line");
    let alert: Value = serde_json::from_str(data).unwrap();
    assert_eq!(alert["identity"]["username"], "eve");
    assert_eq!(alert["analytic"], "AN1579");
    // The same alert is now listed.
    let id = alert["id"].as_str().unwrap();
    api.get_json(&format!("/api/v1/alerts/{id}"), StatusCode::OK)
        .await;
}

#[tokio::test]
async fn http_metrics_health_and_readiness() {
    let api = Api::start().await;
    seed(&api).await;
    let (s, body) = api.get("/healthz").await;
    assert_eq!((s, body.trim()), (StatusCode::OK, "ok"));
    let (s, body) = api.get("/readyz").await;
    assert_eq!((s, body.trim()), (StatusCode::OK, "ready"));
    api.get("/api/v1/alerts?min_severity=bogus").await;
    let (s, text) = api.get("/metrics").await;
    assert_eq!(s, StatusCode::OK);
    for needle in [
        "credtrail_audit_events_total{source=\"webhook\"} 13",
        "credtrail_alerts_total{rule=",
        "credtrail_audit_lag_seconds_bucket",
        "credtrail_api_requests_total{api=\"http\",endpoint=\"/api/v1/alerts\",code=\"400\"} 1",
        "credtrail_live_stream_skipped_total 0",
        "# EOF",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
}

#[tokio::test]
async fn http_web_page_is_served_and_uses_the_api() {
    let api = Api::start().await;
    let (s, headers, html) = api.request(Method::GET, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(
        html.contains("<table id=\"alerts\">") && html.contains("Coverage"),
        "{html}"
    );
    assert!(html.contains("src=\"/app.js\""));
    let (s, js) = api.get("/app.js").await;
    assert_eq!(s, StatusCode::OK);
    for endpoint in [
        "/api/v1/alerts?",
        "/api/v1/alerts/stream?",
        "/api/v1/coverage",
        "/api/v1/export/alerts?",
        "/api/v1/suppressions",
        "text/event-stream",
        "sessionStorage",
        "Authorization",
        "created_by",
        "/api/v1/baselines",
        "/api/v1/learned/nodes",
        "/api/v1/tokens/lineage",
    ] {
        assert!(js.contains(endpoint), "app.js uses {endpoint}");
    }
    assert!(
        !js.contains("innerHTML"),
        "API values are written as text only"
    );
    assert!(
        !js.contains("document.cookie")
            && !js.contains("localStorage.")
            && !js.contains("new EventSource"),
        "the token lives in sessionStorage and travels only in the Authorization header"
    );
    let (s, css) = api.get("/style.css").await;
    assert_eq!(s, StatusCode::OK);
    assert!(css.contains(".sev.critical"));
}

/// The live stream filters in Rust (`AlertFilter::matches`), lists filter in
/// SQL: both must select the same alerts.
#[tokio::test]
async fn http_list_filters_agree_with_the_stream_filter() {
    use credtrail_aggregator::alert::{Alert, Severity};
    use credtrail_aggregator::store::query::AlertFilter;
    use credtrail_proto::model::{NodeInfo, Observation, ObservationEvent};
    let api = Api::start().await;
    // node-b's agent reports its address; the token is then used from it, so
    // the alert's source resolves to node-b (stored in `alerts.node`).
    let info = Observation {
        id: "node-b/boot/1".into(),
        time: base_time(),
        node: "node-b".into(),
        event: ObservationEvent::NodeInfo(NodeInfo {
            name: "node-b".into(),
            addresses: vec!["127.0.10.44".parse().unwrap()],
            agent_version: "0.1.0".into(),
            kernel_release: "6.18.0".into(),
            ..Default::default()
        }),
    };
    api.state
        .pipeline
        .ingest_observations("node-b", vec![info])
        .await
        .unwrap();
    seed(&api).await;
    api.ingest(vec![token_used(
        "aud-from-b",
        &BUILDER,
        "127.0.10.44",
        base_time() + Minutes::minutes(30),
    )])
    .await;
    let all: Vec<Alert> = all_alerts(&api)
        .await
        .into_iter()
        .map(|v| serde_json::from_value(v).unwrap())
        .collect();
    let t0 = base_time();
    let cases: Vec<(&str, AlertFilter)> = vec![
        (
            "analytic=AN1547",
            AlertFilter {
                analytic: Some("AN1547".into()),
                ..Default::default()
            },
        ),
        (
            "min_severity=high",
            AlertFilter {
                min_severity: Some(Severity::High),
                ..Default::default()
            },
        ),
        (
            "node=node-a",
            AlertFilter {
                node: Some("node-a".into()),
                ..Default::default()
            },
        ),
        (
            "node=node-b",
            AlertFilter {
                node: Some("node-b".into()),
                ..Default::default()
            },
        ),
        (
            "source_ip=127.0.77.1",
            AlertFilter {
                source_ip: Some("127.0.77.1".parse().unwrap()),
                ..Default::default()
            },
        ),
        (
            "since=2026-03-01T10%3A05%3A00Z&namespace=team-b",
            AlertFilter {
                since: Some(t0 + Minutes::minutes(5)),
                namespace: Some("team-b".into()),
                ..Default::default()
            },
        ),
        (
            "identity=nobody",
            AlertFilter {
                identity: Some("nobody".into()),
                ..Default::default()
            },
        ),
    ];
    for (query, filter) in cases {
        let want: Vec<&str> = all
            .iter()
            .filter(|a| filter.matches(a))
            .map(|a| a.id.as_str())
            .collect();
        let got = alerts(
            &api.get_json(
                &format!("/api/v1/alerts?{query}&page_size=1000"),
                StatusCode::OK,
            )
            .await,
        );
        assert_eq!(ids(&got), want, "{query}");
        if query == "node=node-b" {
            assert!(!want.is_empty(), "an alert whose source resolved to node-b");
        }
    }
}
