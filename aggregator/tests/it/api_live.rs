//! The live alert stream itself (shared by gRPC and SSE): filtering, and a
//! reader that falls behind the pipeline's broadcast buffer is told exactly
//! how many alerts it missed.

use crate::api_support;
use crate::common::wait::{SOON, within};

use api_support::{Api, base_time, grant_to_anonymous};
use chrono::Duration as Minutes;
use credtrail_aggregator::api::live::{LiveEvent, subscribe};
use credtrail_aggregator::store::query::AlertFilter;
use futures::StreamExt as _;

#[tokio::test]
async fn a_reader_that_falls_behind_is_told_exactly_how_many_it_missed() {
    let api = Api::start().await;
    let stream = subscribe(&api.state, AlertFilter::default());
    let mut stream = Box::pin(stream);
    let t = base_time();
    let total = 5000usize;
    let mut raised = 0;
    for chunk in 0..(total / 500) {
        let events = (0..500)
            .map(|i| {
                let n = chunk * 500 + i;
                grant_to_anonymous(
                    &format!("live-{n}"),
                    &format!("live-{n}"),
                    &format!("m-{n}"),
                    "127.0.55.3",
                    t + Minutes::milliseconds(n as i64),
                )
            })
            .collect();
        raised += api.ingest(events).await;
    }
    assert_eq!(raised, total);
    // Nothing was read yet: the buffer (4096) kept the newest alerts.
    let first = within("the live stream's first event", SOON, stream.next())
        .await
        .unwrap();
    let LiveEvent::Skipped(missed) = first else {
        panic!("expected a skipped notice first, got {first:?}")
    };
    let mut delivered = 0u64;
    let mut last_user = String::new();
    while delivered + missed < total as u64 {
        match within("the next live alert", SOON, stream.next())
            .await
            .unwrap()
        {
            LiveEvent::Alert(a) => {
                delivered += 1;
                last_user = a.identity.username.clone();
            }
            LiveEvent::Skipped(n) => panic!("second skip of {n} with nothing new raised"),
            LiveEvent::Triage(t) => panic!("no triage was made: {t:?}"),
        }
    }
    assert_eq!(missed + delivered, total as u64);
    assert_eq!(delivered, 4096, "the broadcast buffer's worth is delivered");
    assert_eq!(last_user, format!("m-{}", total - 1), "newest alert last");
    let text = api.state.metrics.encode();
    assert!(
        text.contains(&format!("credtrail_live_stream_skipped_total {missed}")),
        "{text}"
    );
    assert!(text.contains("credtrail_live_stream_clients 1"), "{text}");
    drop(stream);
    assert!(
        api.state
            .metrics
            .encode()
            .contains("credtrail_live_stream_clients 0")
    );
}

#[tokio::test]
async fn the_stream_applies_its_filter() {
    let api = Api::start().await;
    let filter = AlertFilter {
        identity: Some("eve".into()),
        ..Default::default()
    };
    let mut stream = Box::pin(subscribe(&api.state, filter));
    let t = base_time();
    api.ingest(vec![
        grant_to_anonymous("f-1", "f-1", "mallory", "127.0.55.1", t),
        grant_to_anonymous("f-2", "f-2", "eve", "127.0.55.2", t),
        grant_to_anonymous("f-3", "f-3", "mallory", "127.0.55.1", t),
        grant_to_anonymous("f-4", "f-4", "eve", "127.0.55.9", t),
    ])
    .await;
    for want_ip in ["127.0.55.2", "127.0.55.9"] {
        match within(&format!("eve's alert from {want_ip}"), SOON, stream.next())
            .await
            .unwrap()
        {
            LiveEvent::Alert(a) => {
                assert_eq!(a.identity.username, "eve");
                assert_eq!(a.source_ip.unwrap().to_string(), want_ip);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
