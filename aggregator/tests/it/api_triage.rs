//! Alert triage on real loopback listeners with real token auth: HTTP and
//! gRPC writes attributed to the authenticated principal, history, viewers
//! refused, filters, the false-positive suppression suggestion submitted as
//! is, no catch-all suggestion, bounded notes, live-stream events, exports.

use crate::api_support;

use std::time::Duration;

use api_support::{Api, RESPONDER_TOKEN, VIEWER_TOKEN, base_time, grant_to_anonymous};
use chrono::Duration as Minutes;
use credtrail_proto::pb::query as pb;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

/// Raises one AN1579 alert per actor (each from its own address); returns
/// their ids, in the order given.
async fn raise(api: &Api, actors: &[(&str, &str)]) -> Vec<String> {
    let t = base_time();
    let mut ids = Vec::new();
    for (i, (actor, ip)) in actors.iter().enumerate() {
        let aud = format!("aud-triage-{actor}-{i}-{}", uuid_ish());
        let n = api
            .ingest(vec![grant_to_anonymous(
                &aud,
                &format!("bind-{i}-{}", uuid_ish()),
                actor,
                ip,
                t + Minutes::minutes(i as i64),
            )])
            .await;
        assert_eq!(n, 1, "a grant to system:anonymous by {actor} alerts");
        let list = api
            .get_json(
                &format!("/api/v1/alerts?identity={}", enc(actor)),
                StatusCode::OK,
            )
            .await;
        let id = list["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["audit_ids"][0] == aud.as_str())
            .unwrap_or_else(|| panic!("alert of {aud} listed: {list}"))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        ids.push(id);
    }
    ids
}

fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `POST path` with `token` as JSON; status and parsed body.
async fn post_as(api: &Api, token: &str, path: &str, body: Value) -> (StatusCode, Value) {
    let auth = format!("Bearer {token}");
    let (s, _, b) = api
        .request_with(
            Method::POST,
            path,
            Some(body.to_string()),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "application/json"),
            ],
        )
        .await;
    let v = serde_json::from_str(&b).unwrap_or(Value::String(b));
    (s, v)
}

async fn triage(api: &Api, token: &str, id: &str, body: Value) -> (StatusCode, Value) {
    post_as(api, token, &format!("/api/v1/alerts/{id}/triage"), body).await
}

fn listed(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| (*s).clone()).collect();
    v.sort();
    v
}

#[tokio::test]
async fn http_triage_is_attributed_kept_as_history_filtered_and_refused_to_viewers() {
    let api = Api::start().await;
    let ids = raise(
        &api,
        &[
            ("mallory", "127.0.66.1"),
            ("trent", "127.0.66.2"),
            ("oscar", "127.0.66.3"),
        ],
    )
    .await;
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);

    // Every alert starts open and unassigned.
    let all = api.get_json("/api/v1/alerts", StatusCode::OK).await;
    for x in all["alerts"].as_array().unwrap() {
        assert_eq!(x["triage"]["status"], "open", "{x}");
        assert!(x["triage"]["assignee"].is_null());
        assert!(
            x["triage"].get("history").is_none(),
            "lists carry no history"
        );
    }

    // A viewer may read but not triage.
    let (s, body) = triage(&api, VIEWER_TOKEN, a, json!({"status": "acknowledged"})).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["code"], "forbidden");
    // Not JSON: 415 before anything is parsed.
    let auth = format!("Bearer {RESPONDER_TOKEN}");
    let (s, _, _) = api
        .request_with(
            Method::POST,
            &format!("/api/v1/alerts/{a}/triage"),
            Some("status=closed_benign".into()),
            &[
                ("authorization", auth.as_str()),
                ("content-type", "text/plain"),
            ],
        )
        .await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // A responder acknowledges and assigns; the principal is recorded, and a
    // client-supplied name is refused, not used.
    let (s, body) = triage(
        &api,
        RESPONDER_TOKEN,
        a,
        json!({"status": "acknowledged", "assignee": "alice", "note": "looking at it"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["id"], a.as_str());
    assert_eq!(body["triage"]["status"], "acknowledged");
    assert_eq!(body["triage"]["assignee"], "alice");
    assert_eq!(body["triage"]["updated_by"], "token:responder");
    assert!(body.get("suggested_suppression").is_none());
    let (s, body) = triage(
        &api,
        RESPONDER_TOKEN,
        a,
        json!({"note": "x", "updated_by": "token:admin"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // The admin unassigns and closes; history keeps both principals, oldest first.
    let (s, body) = triage(
        &api,
        api_support::ADMIN_TOKEN,
        a,
        json!({"status": "closed_true_positive", "assignee": null}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let one = api
        .get_json(&format!("/api/v1/alerts/{a}"), StatusCode::OK)
        .await;
    let t = &one["triage"];
    assert_eq!(t["status"], "closed_true_positive");
    assert!(t["assignee"].is_null());
    assert_eq!(t["updated_by"], "token:admin");
    assert_eq!(t["last_note"], "looking at it");
    let h = t["history"].as_array().unwrap();
    assert_eq!(h.len(), 2, "{t}");
    assert_eq!(h[0]["by"], "token:responder");
    assert_eq!(h[0]["status"], "acknowledged");
    assert_eq!(h[0]["assignee"], "alice");
    assert_eq!(h[0]["note"], "looking at it");
    assert_eq!(h[1]["by"], "token:admin");
    assert!(h[1]["assignee"].is_null() && h[1].get("assignee").is_some());
    assert!(h[1].get("note").is_none());

    // b: acknowledged and assigned to bob; c stays open.
    let (s, _) = triage(
        &api,
        RESPONDER_TOKEN,
        b,
        json!({"status": "acknowledged", "assignee": "bob"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    for (query, want) in [
        ("status=open", sorted(&[c])),
        ("status=acknowledged", sorted(&[b])),
        ("status=closed", sorted(&[a])),
        ("status=closed_true_positive", sorted(&[a])),
        ("status=closed_benign", vec![]),
        ("assignee=bob", sorted(&[b])),
        ("assignee=alice", vec![]),
        ("status=acknowledged&assignee=bob", sorted(&[b])),
        ("status=open&assignee=bob", vec![]),
    ] {
        let got = api
            .get_json(&format!("/api/v1/alerts?{query}"), StatusCode::OK)
            .await;
        assert_eq!(listed(&got), want, "filter {query}");
    }
    let bad = api
        .get_json("/api/v1/alerts?status=opened", StatusCode::BAD_REQUEST)
        .await;
    assert!(bad["error"].as_str().unwrap().contains("status"), "{bad}");

    // Bad changes: 400 naming the field; unknown alert: 404.
    for (body, field) in [
        (json!({"note": "n".repeat(4097)}), "note"),
        (json!({"note": "\u{1b}]0;pwned\u{7}"}), "note"),
        (json!({"assignee": ""}), "assignee"),
        (json!({"status": "closed"}), "status"),
        (json!({}), "body"),
    ] {
        let (s, v) = triage(&api, RESPONDER_TOKEN, c, body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["code"], "invalid_argument");
        assert!(v["error"].as_str().unwrap().contains(field), "{body}: {v}");
    }
    let (s, _) = triage(&api, RESPONDER_TOKEN, "no-such-alert", json!({"note": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A note at the bound is accepted; c's history has exactly that change.
    let long = "é".repeat(4096);
    let (s, v) = triage(&api, RESPONDER_TOKEN, c, json!({"note": long})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["triage"]["history"].as_array().unwrap().len(), 1);
    assert_eq!(v["triage"]["status"], "open");
}

#[tokio::test]
async fn a_false_positive_close_offers_a_suppression_the_api_accepts_as_is() {
    let api = Api::start().await;
    let ids = raise(&api, &[("ci-deployer", "127.0.66.9")]).await;
    let (s, body) = triage(
        &api,
        RESPONDER_TOKEN,
        &ids[0],
        json!({"status": "closed_false_positive", "note": "the deploy pipeline, INC-42"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let sug = body["suggested_suppression"].clone();
    assert_eq!(sug["match"]["username"], "ci-deployer", "{sug}");
    assert_eq!(sug["match"]["source_cidr"], "127.0.66.9/32");
    assert!(
        sug["match"]["rule"]
            .as_str()
            .unwrap()
            .starts_with("CT1579-")
    );
    assert_eq!(sug["owner"], "token:responder");
    assert!(sug["reason"].as_str().unwrap().contains("INC-42"));
    // Nothing is suppressed until it is submitted.
    let none = api.get_json("/api/v1/suppressions", StatusCode::OK).await;
    assert!(none["suppressions"].as_array().unwrap().is_empty());
    // Submitted as is: accepted by the guarded endpoint, attributed.
    let (s, created) = post_as(&api, RESPONDER_TOKEN, "/api/v1/suppressions", sug).await;
    assert_eq!(s, StatusCode::CREATED, "{created}");
    assert_eq!(created["created_by"], "token:responder");
    let sid = created["id"].as_str().unwrap().to_owned();
    // The same actor, from the same address, granting again: suppressed.
    let t = base_time() + Minutes::minutes(30);
    let raised = api
        .ingest(vec![grant_to_anonymous(
            "aud-fp-again",
            "bind-fp-again",
            "ci-deployer",
            "127.0.66.9",
            t,
        )])
        .await;
    assert_eq!(raised, 0, "the accepted suggestion silences alerts like it");
    let all = api
        .get_json(
            "/api/v1/alerts?include_suppressed=true&identity=ci-deployer",
            StatusCode::OK,
        )
        .await;
    let again = all["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["audit_ids"][0] == "aud-fp-again")
        .expect("stored, suppressed");
    assert_eq!(again["suppressed_by"], sid.as_str());
    // Another actor from the same address still alerts.
    let raised = api
        .ingest(vec![grant_to_anonymous(
            "aud-fp-other",
            "bind-fp-other",
            "mallory",
            "127.0.66.9",
            t,
        )])
        .await;
    assert_eq!(raised, 1, "the suggestion is not wider than the alert");
}

#[tokio::test]
async fn an_identity_that_reads_as_a_pattern_gets_no_catch_all_suggestion() {
    let api = Api::start().await;
    let ids = raise(&api, &[("*", "127.0.66.20"), ("system:*", "127.0.66.21")]).await;
    for id in &ids {
        let (s, body) = triage(
            &api,
            RESPONDER_TOKEN,
            id,
            json!({"status": "closed_false_positive"}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        assert!(body.get("suggested_suppression").is_none(), "{body}");
        assert!(
            body["suggestion_unavailable"]
                .as_str()
                .unwrap()
                .contains("pattern"),
            "{body}"
        );
    }
    // And the hand-made catch-all is still refused by the guard.
    let (s, v) = post_as(
        &api,
        RESPONDER_TOKEN,
        "/api/v1/suppressions",
        json!({"owner": "x", "reason": "y", "expires": (chrono::Utc::now() + Minutes::days(1)).to_rfc3339(),
               "match": {"username": "*", "source_cidr": "127.0.66.20/32"}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "a /32 narrows: {v}");
    let (s, v) = post_as(
        &api,
        RESPONDER_TOKEN,
        "/api/v1/suppressions",
        json!({"owner": "x", "reason": "y", "expires": (chrono::Utc::now() + Minutes::days(1)).to_rfc3339(),
               "match": {"username": "*"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

#[tokio::test]
async fn grpc_triage_is_attributed_filtered_and_refused_to_viewers() {
    let api = Api::start().await;
    let ids = raise(
        &api,
        &[("mallory", "127.0.66.31"), ("trent", "127.0.66.32")],
    )
    .await;
    let mut viewer = api.grpc_client_as(Some(VIEWER_TOKEN)).await;
    let err = viewer
        .triage_alert(pb::TriageAlertRequest {
            id: ids[0].clone(),
            status: pb::TriageStatus::Acknowledged as i32,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    let mut c = api.grpc_client_as(Some(RESPONDER_TOKEN)).await;
    let out = c
        .triage_alert(pb::TriageAlertRequest {
            id: ids[0].clone(),
            status: pb::TriageStatus::ClosedFalsePositive as i32,
            assignee: Some("alice".into()),
            note: Some("lab cluster".into()),
        })
        .await
        .unwrap()
        .into_inner();
    let t = out.alert.unwrap().triage.unwrap();
    assert_eq!(t.status, pb::TriageStatus::ClosedFalsePositive as i32);
    assert_eq!(t.assignee.as_deref(), Some("alice"));
    assert_eq!(t.updated_by, "token:responder");
    assert_eq!(t.history.len(), 1);
    assert_eq!(t.history[0].by, "token:responder");
    assert_eq!(t.history[0].note.as_deref(), Some("lab cluster"));
    let sug = out.suggested_suppression.expect("a suggestion");
    assert_eq!(
        sug.r#match.as_ref().unwrap().username.as_deref(),
        Some("mallory")
    );
    // The suggestion goes to CreateSuppression as is.
    let created = c.create_suppression(sug).await.unwrap().into_inner();
    assert_eq!(created.created_by, "token:responder");
    // Unassign with "", CLOSED refused, unknown id NOT_FOUND, empty change refused.
    let out = c
        .triage_alert(pb::TriageAlertRequest {
            id: ids[0].clone(),
            assignee: Some(String::new()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let t = out.alert.unwrap().triage.unwrap();
    assert_eq!(t.assignee, None);
    assert!(t.history[1].assignee_changed);
    for (req, code) in [
        (
            pb::TriageAlertRequest {
                id: ids[1].clone(),
                status: pb::TriageStatus::Closed as i32,
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            pb::TriageAlertRequest {
                id: ids[1].clone(),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            pb::TriageAlertRequest {
                id: ids[1].clone(),
                note: Some("x".repeat(5000)),
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
        ),
        (
            pb::TriageAlertRequest {
                id: "nope".into(),
                note: Some("x".into()),
                ..Default::default()
            },
            tonic::Code::NotFound,
        ),
    ] {
        let e = c.triage_alert(req.clone()).await.unwrap_err();
        assert_eq!(e.code(), code, "{req:?}: {e}");
    }
    // Filters.
    for (status, want) in [
        (pb::TriageStatus::Closed, &ids[0]),
        (pb::TriageStatus::ClosedFalsePositive, &ids[0]),
        (pb::TriageStatus::Open, &ids[1]),
    ] {
        let page = viewer
            .list_alerts(pb::ListAlertsRequest {
                filter: Some(pb::AlertFilter {
                    status: status as i32,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let got: Vec<&str> = page.alerts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(got, vec![want.as_str()], "{status:?}");
    }
    let detail = viewer
        .get_alert(pb::GetAlertRequest { id: ids[0].clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(detail.triage.unwrap().history.len(), 2);
}

/// Reads server-sent events from `body` until one of kind `event` arrives.
async fn next_event(body: &mut hyper::body::Incoming, text: &mut String, event: &str) -> Value {
    use http_body_util::BodyExt as _;
    let tag = format!("event: {event}\n");
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(pos) = text.find(&tag) {
                let rest = &text[pos..];
                if let Some(end) = rest.find("\n\n") {
                    let block = rest[..end].to_owned();
                    text.replace_range(..pos + end + 2, "");
                    let data = block
                        .lines()
                        .find_map(|l| l.strip_prefix("data: "))
                        .expect("data line");
                    return serde_json::from_str(data).unwrap();
                }
            }
            let frame = body.frame().await.expect("stream open").unwrap();
            if let Ok(d) = frame.into_data() {
                text.push_str(std::str::from_utf8(&d).unwrap());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{event}` event within 10 s: {text}"))
}

#[tokio::test]
async fn triage_changes_reach_the_live_streams() {
    let api = Api::start().await;
    let ids = raise(&api, &[("mallory", "127.0.66.41")]).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    // Watching open alerts: the alert leaving `open` is still told.
    let req = hyper::Request::get(format!(
        "http://{}/api/v1/alerts/stream?status=open",
        api.http
    ))
    .header("authorization", format!("Bearer {VIEWER_TOKEN}"))
    .body(http_body_util::Empty::new())
    .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    let mut grpc = api.grpc_client_as(Some(VIEWER_TOKEN)).await;
    let mut stream = grpc
        .stream_alerts(pb::StreamAlertsRequest {
            filter: Some(pb::AlertFilter {
                assignee: Some("alice".into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    // Both subscriptions exist once their heads arrived.
    let (s, _) = triage(
        &api,
        RESPONDER_TOKEN,
        &ids[0],
        json!({"status": "acknowledged", "assignee": "alice", "note": "mine"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let mut text = String::new();
    let ev = next_event(&mut body, &mut text, "triage").await;
    assert_eq!(ev["id"], ids[0].as_str());
    assert_eq!(ev["triage"]["status"], "acknowledged");
    assert_eq!(ev["change"]["by"], "token:responder");
    assert_eq!(ev["change"]["note"], "mine");
    let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a gRPC triage event within 10 s")
        .unwrap()
        .expect("stream open");
    let Some(pb::stream_alerts_response::Event::Triage(t)) = msg.event else {
        panic!("expected a triage event, got {msg:?}")
    };
    assert_eq!(t.id, ids[0]);
    assert_eq!(t.change.unwrap().by, "token:responder");
    // A second change (acknowledged → closed) no longer concerns `status=open`
    // (neither before nor after is open), so the SSE client gets nothing
    // until a new, open alert arrives.
    triage(
        &api,
        RESPONDER_TOKEN,
        &ids[0],
        json!({"status": "closed_benign"}),
    )
    .await;
    raise(&api, &[("trent", "127.0.66.42")]).await;
    let (kind_alert, _) = {
        let v = next_event(&mut body, &mut text, "alert").await;
        (v["identity"]["username"] == "trent", v)
    };
    assert!(kind_alert);
    assert!(
        !text.contains("event: triage"),
        "the closing change was filtered out: {text}"
    );
}

#[tokio::test]
async fn exports_carry_triage_with_notes_escaped() {
    let api = Api::start().await;
    let ids = raise(&api, &[("mallory", "127.0.66.51")]).await;
    let note = "benign\nCEF:0|forged|x|1|y|z|10|act=delete\\ suser=root";
    let (s, _) = triage(
        &api,
        RESPONDER_TOKEN,
        &ids[0],
        json!({"status": "closed_benign", "assignee": "a=b", "note": note}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let (s, cef) = api.get("/api/v1/export/alerts?format=cef").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(cef.lines().count(), 1, "{cef}");
    assert!(cef.contains("flexString1=closed_benign"), "{cef}");
    assert!(cef.contains("flexString2=a\\=b"), "{cef}");
    assert!(cef.contains("ctTriageNote=benign\\nCEF:0|forged"), "{cef}");
    assert!(!cef.contains(" act=delete"), "{cef}");
    let (s, jsonl) = api
        .get("/api/v1/export/alerts?format=jsonl&status=closed")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(jsonl.lines().count(), 1, "{jsonl}");
    let v: Value = serde_json::from_str(jsonl.trim()).unwrap();
    assert_eq!(v["triage"]["last_note"], note);
    assert_eq!(v["triage"]["updated_by"], "token:responder");
    let (_, none) = api.get("/api/v1/export/alerts?status=open").await;
    assert!(none.is_empty(), "{none}");
}

#[tokio::test]
async fn concurrent_changes_are_all_recorded_and_the_history_stays_bounded() {
    let api = std::sync::Arc::new(Api::start().await);
    let ids = raise(&api, &[("mallory", "127.0.66.71")]).await;
    let id = ids[0].clone();
    let total = 210usize;
    // 16 writers at a time: one client address may hold at most 64
    // connections (`--max-connections-per-ip`), and the client's pool can
    // open a few more connections than requests in flight.
    let writers = std::sync::Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let (api, id, writers) = (api.clone(), id.clone(), writers.clone());
        tasks.spawn(async move {
            let _w = writers.acquire_owned().await.unwrap();
            let (s, v) = triage(&api, RESPONDER_TOKEN, &id, json!({"note": format!("n{i}")})).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let one = api
        .get_json(&format!("/api/v1/alerts/{id}"), StatusCode::OK)
        .await;
    let h = one["triage"]["history"].as_array().unwrap();
    assert_eq!(h.len(), 200, "bounded");
    assert_eq!(one["triage"]["history_dropped"], (total - 200) as u64);
    // Every kept entry is a distinct change, oldest first.
    let notes: std::collections::HashSet<&str> =
        h.iter().map(|c| c["note"].as_str().unwrap()).collect();
    assert_eq!(notes.len(), 200);
    // Compared as times, not strings: RFC 3339 leaves the fraction out of a
    // whole second (`…:52Z` sorts after `…:52.005Z` as text).
    let times: Vec<chrono::DateTime<chrono::FixedOffset>> = h
        .iter()
        .map(|c| chrono::DateTime::parse_from_rfc3339(c["at"].as_str().unwrap()).unwrap())
        .collect();
    assert!(times.is_sorted(), "oldest first: {times:?}");
}
