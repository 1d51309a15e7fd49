//! The gRPC `QueryService` against a real in-process aggregator: the same
//! seeded alerts as over HTTP, deliberate status codes, the live stream.

use crate::api_support;

use std::time::Duration;

use api_support::{Api, base_time, grant_admin_in_namespace, grant_to_anonymous};
use chrono::{Duration as Minutes, Utc};
use credtrail_aggregator::alert::Alert;
use credtrail_proto::pb::query as pb;
use tonic::Code;

async fn seed(api: &Api) -> usize {
    let t0 = base_time();
    let mut events = Vec::new();
    for i in 0..5 {
        events.push(grant_to_anonymous(
            &format!("g-anon-{i}"),
            &format!("g-anon-{i}"),
            &format!("mallory-{i}"),
            "127.0.66.1",
            t0 + Minutes::minutes(i),
        ));
    }
    for i in 0..3 {
        events.push(grant_admin_in_namespace(
            &format!("g-rb-{i}"),
            "team-a",
            &format!("g-rb-{i}"),
            "bob",
            "carol",
            "127.0.77.1",
            t0 + Minutes::minutes(10 + i),
        ));
    }
    api.ingest(events).await
}

fn filter() -> pb::AlertFilter {
    pb::AlertFilter::default()
}

#[tokio::test]
async fn grpc_lists_filters_pages_and_gets_alerts() {
    let api = Api::start().await;
    let raised = seed(&api).await;
    let mut c = api.grpc_client().await;

    let all = c
        .list_alerts(pb::ListAlertsRequest {
            filter: None,
            page_size: 1000,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(all.alerts.len(), raised);
    assert!(all.next_page_token.is_empty());
    // Every message converts back into a domain alert.
    let domain: Vec<Alert> = all
        .alerts
        .iter()
        .cloned()
        .map(|a| Alert::try_from(a).unwrap())
        .collect();

    // Same order as HTTP, paged by 3.
    let mut walked = Vec::new();
    let mut token = String::new();
    loop {
        let page = c
            .list_alerts(pb::ListAlertsRequest {
                filter: None,
                page_size: 3,
                page_token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        walked.extend(page.alerts.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(
        walked,
        domain.iter().map(|a| a.id.clone()).collect::<Vec<_>>()
    );

    // Filters, checked against the domain alerts.
    let ns = c
        .list_alerts(pb::ListAlertsRequest {
            filter: Some(pb::AlertFilter {
                namespace: Some("team-a".into()),
                ..filter()
            }),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<&str> = domain
        .iter()
        .filter(|a| a.request.namespace.as_deref() == Some("team-a"))
        .map(|a| a.id.as_str())
        .collect();
    assert!(!want.is_empty() && want.len() < domain.len());
    assert_eq!(
        ns.alerts.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(),
        want
    );

    let crit = c
        .list_alerts(pb::ListAlertsRequest {
            filter: Some(pb::AlertFilter {
                min_severity: pb::Severity::Critical.into(),
                since: Some(prost_types::Timestamp {
                    seconds: (base_time() + Minutes::minutes(2)).timestamp(),
                    nanos: 0,
                }),
                ..filter()
            }),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let want: Vec<&str> = domain
        .iter()
        .filter(|a| {
            a.severity == credtrail_aggregator::alert::Severity::Critical
                && a.time >= base_time() + Minutes::minutes(2)
        })
        .map(|a| a.id.as_str())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(
        crit.alerts
            .iter()
            .map(|a| a.id.as_str())
            .collect::<Vec<_>>(),
        want
    );

    let one = c
        .get_alert(pb::GetAlertRequest {
            id: domain[2].id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(Alert::try_from(one).unwrap(), domain[2]);
    let err = c
        .get_alert(pb::GetAlertRequest { id: "nope".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
}

#[tokio::test]
async fn grpc_bad_requests_get_deliberate_codes() {
    let api = Api::start().await;
    let mut c = api.grpc_client().await;
    let bad_filters = [
        pb::AlertFilter {
            source_ip: Some("300.1.1.1".into()),
            ..filter()
        },
        pb::AlertFilter {
            min_severity: 99,
            ..filter()
        },
        pb::AlertFilter {
            since: Some(prost_types::Timestamp {
                seconds: 20,
                nanos: 0,
            }),
            until: Some(prost_types::Timestamp {
                seconds: 10,
                nanos: 0,
            }),
            ..filter()
        },
    ];
    for f in bad_filters {
        let err = c
            .list_alerts(pb::ListAlertsRequest {
                filter: Some(f.clone()),
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{f:?}: {err}");
        let err = c
            .stream_alerts(pb::StreamAlertsRequest { filter: Some(f) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
    }
    let err = c
        .list_alerts(pb::ListAlertsRequest {
            filter: None,
            page_size: 0,
            page_token: "garbage!".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("page_token"), "{err}");
    let err = c
        .list_alerts(pb::ListAlertsRequest {
            filter: None,
            page_size: 100_000,
            page_token: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);

    let err = c
        .create_suppression(pb::CreateSuppressionRequest {
            owner: "soc".into(),
            reason: "drill".into(),
            expires: None,
            r#match: Some(pb::SuppressionMatch {
                username: Some("eve".into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("expires"), "{err}");
    let err = c
        .delete_suppression(pb::DeleteSuppressionRequest {
            id: "api-none".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
}

#[tokio::test]
async fn grpc_policy_suppressions_cannot_be_deleted_through_the_api() {
    let expires = (Utc::now() + Minutes::days(2)).to_rfc3339();
    let policy = api_support::cluster_policy(&format!(
        "suppressions:\n  - id: pol-1\n    owner: platform\n    reason: known CI grant\n    expires: \"{expires}\"\n    match:\n      username: ci-bot\n"
    ));
    let api = Api::start_with(policy).await;
    let mut c = api.grpc_client().await;
    let list = c
        .list_suppressions(pb::ListSuppressionsRequest {
            include_expired: false,
        })
        .await
        .unwrap()
        .into_inner();
    let pol = list
        .suppressions
        .iter()
        .find(|s| s.id == "pol-1")
        .expect("policy suppression listed");
    assert_eq!(pol.origin, "policy");
    assert!(pol.active);
    let err = c
        .delete_suppression(pb::DeleteSuppressionRequest { id: "pol-1".into() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err}");

    // An API one round-trips.
    let created = c
        .create_suppression(pb::CreateSuppressionRequest {
            owner: "soc".into(),
            reason: "drill".into(),
            expires: Some(prost_types::Timestamp {
                seconds: (Utc::now() + Minutes::hours(1)).timestamp(),
                nanos: 0,
            }),
            r#match: Some(pb::SuppressionMatch {
                rule: Some("CT1579-001".into()),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(created.id.starts_with("api-"));
    c.delete_suppression(pb::DeleteSuppressionRequest { id: created.id })
        .await
        .unwrap();
}

#[tokio::test]
async fn grpc_stream_receives_new_alerts_matching_its_filter() {
    let api = Api::start().await;
    let mut c = api.grpc_client().await;
    let mut stream = c
        .stream_alerts(pb::StreamAlertsRequest {
            filter: Some(pb::AlertFilter {
                identity: Some("eve".into()),
                ..filter()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let t = base_time();
    // mallory's alert does not match the filter; eve's does.
    api.ingest(vec![
        grant_to_anonymous("s-1", "s-1", "mallory", "127.0.55.1", t),
        grant_to_anonymous("s-2", "s-2", "eve", "127.0.55.2", t),
    ])
    .await;
    let msg = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
        .unwrap()
        .expect("stream open");
    match msg.event {
        Some(pb::stream_alerts_response::Event::Alert(a)) => {
            assert_eq!(a.identity.unwrap().username, "eve");
        }
        other => panic!("expected an alert, got {other:?}"),
    }
}

#[tokio::test]
async fn grpc_slow_stream_client_is_told_how_many_it_missed() {
    let api = Api::start().await;
    let mut c = api.grpc_client_small_window().await;
    let mut stream = c
        .stream_alerts(pb::StreamAlertsRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    // Raise far more alerts than the broadcast buffer (4096) holds while the
    // client does not read: it must be told, not silently lose them.
    let t = base_time();
    let total = 6000;
    for chunk in 0..(total / 500) {
        let events = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                grant_to_anonymous(
                    &format!("lag-{n}"),
                    &format!("lag-{n}"),
                    &format!("m-{n}"),
                    "127.0.55.3",
                    t + Minutes::milliseconds(n as i64),
                )
            })
            .collect();
        api.ingest(events).await;
    }
    let mut alerts = 0u64;
    let mut skipped = 0u64;
    while alerts + skipped < total as u64 {
        let msg = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("stream keeps delivering")
            .unwrap()
            .expect("stream open");
        match msg.event.unwrap() {
            pb::stream_alerts_response::Event::Alert(_) => alerts += 1,
            pb::stream_alerts_response::Event::Skipped(s) => skipped += s.count,
            pb::stream_alerts_response::Event::Triage(t) => panic!("no triage was made: {t:?}"),
        }
    }
    assert_eq!(
        alerts + skipped,
        total as u64,
        "every alert is either delivered or counted as skipped"
    );
    assert!(skipped > 0, "the slow client fell behind and was told");
    assert!(
        api.state
            .metrics
            .encode()
            .contains(&format!("credtrail_live_stream_skipped_total {skipped}"))
    );
}

#[tokio::test]
async fn grpc_inventories_and_coverage() {
    let api = Api::start().await;
    seed(&api).await;
    let mut c = api.grpc_client().await;
    let b = c
        .list_bindings(pb::ListBindingsRequest {
            namespace: Some("team-a".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(b.bindings.len(), 3);
    assert!(
        b.bindings
            .iter()
            .all(|b| b.role_name.as_deref() == Some("admin") && b.high_privilege)
    );
    let creds = c
        .list_credentials(pb::ListCredentialsRequest {
            identity: Some("bob".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(creds.credentials.len(), 1, "{creds:?}");
    assert_eq!(creds.credentials[0].uses[0].source_ip, "127.0.77.1");
    let cov = c
        .get_coverage(pb::GetCoverageRequest {
            freshness_seconds: 0.0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cov.freshness_seconds, 120.0);
    assert_eq!(cov.bindings.unwrap().status(), pb::LevelStatus::Sufficient);
    assert!(
        cov.audit_sources
            .iter()
            .any(|s| s.source == "webhook" && s.alive && s.events == 8)
    );
    let nodes = c
        .list_nodes(pb::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(nodes.nodes.is_empty());
    let err = c
        .get_coverage(pb::GetCoverageRequest {
            freshness_seconds: f64::NAN,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
}
