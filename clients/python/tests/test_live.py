"""The Python client against a live, authenticated aggregator.

Run by aggregator/tests/it/python_client.rs, which starts
`credtrail-aggregator serve` (gRPC with TLS, token authentication), seeds
alerts through the audit webhook and passes everything in the environment.
Each wait is a few seconds at most.
"""

import concurrent.futures
import json
import os
import ssl
import unittest
import urllib.request

import grpc

from credtrail_client import Client, CredtrailError, pb

ENV = os.environ
WAIT = 5.0


def client(token=None):
    return Client(ENV["CREDTRAIL_GRPC"], token or ENV["CREDTRAIL_TOKEN"], ca_file=ENV["CREDTRAIL_CA"])


def post_audit(path):
    with open(path, "rb") as f:
        body = f.read()
    ctx = ssl.create_default_context(cafile=ENV["CREDTRAIL_CA"])
    req = urllib.request.Request(
        ENV["CREDTRAIL_WEBHOOK"],
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": "Bearer " + ENV["CREDTRAIL_WEBHOOK_TOKEN"]},
    )
    with urllib.request.urlopen(req, context=ctx, timeout=WAIT) as r:
        assert r.status == 200, r.status


class LiveAggregator(unittest.TestCase):
    def test_list_filter_and_get(self):
        with client() as c:
            alerts = list(c.list_alerts(page_size=1))
            self.assertGreaterEqual(len(alerts), 2, "seeded alerts, paged one at a time")
            rules = {a.rule for a in alerts}
            self.assertIn("CT1547-002", rules)
            an1579 = list(c.list_alerts(analytic="AN1579"))
            self.assertTrue(an1579 and all(a.analytic == "AN1579" for a in an1579))
            one = c.get_alert(alerts[0].id)
            self.assertEqual(one.id, alerts[0].id)
            self.assertTrue(one.reason)
            high = list(c.list_alerts(min_severity="critical"))
            self.assertTrue(all(a.severity == pb.SEVERITY_CRITICAL for a in high))

    def test_unknown_token_is_refused(self):
        with client(token="not-a-token-0123456789abcdef0123456789") as c:
            with self.assertRaises(CredtrailError) as e:
                list(c.list_alerts())
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)

    def test_unknown_alert_is_not_found(self):
        with client() as c:
            with self.assertRaises(CredtrailError) as e:
                c.get_alert("no-such-alert")
            self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_plaintext_needs_to_be_asked_for(self):
        with self.assertRaises(ValueError):
            Client(ENV["CREDTRAIL_GRPC"], ENV["CREDTRAIL_TOKEN"])

    def test_stream_receives_a_live_alert(self):
        with client() as c:
            stream = c.stream_alerts(analytic="AN1579")
            stream.wait_ready(WAIT)
            post_audit(ENV["CREDTRAIL_LIVE_EVENT"])
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                first = ex.submit(lambda: next(iter(stream)))
                try:
                    event = first.result(timeout=WAIT)
                finally:
                    stream.cancel()
            self.assertEqual(event.WhichOneof("event"), "alert")
            self.assertEqual(event.alert.identity.username, "eve")
            self.assertEqual(event.alert.analytic, "AN1579")

    def test_triage_acknowledge_assign_close_and_suppress(self):
        with client() as c:
            alert = next(iter(c.list_alerts(analytic="AN1547")))
            events = c.stream_alerts()
            events.wait_ready(WAIT)
            r = c.triage_alert(alert.id, status="acknowledged", assignee="bob", note="from python")
            self.assertEqual(r.alert.triage.status, pb.TRIAGE_STATUS_ACKNOWLEDGED)
            self.assertEqual(r.alert.triage.assignee, "bob")
            self.assertTrue(r.alert.triage.updated_by.startswith("token:analyst"), r.alert.triage.updated_by)
            with concurrent.futures.ThreadPoolExecutor(1) as ex:
                first = ex.submit(lambda: next(iter(events)))
                try:
                    ev = first.result(timeout=WAIT)
                finally:
                    events.cancel()
            self.assertEqual(ev.WhichOneof("event"), "triage")
            self.assertEqual(ev.triage.id, alert.id)
            mine = [a.id for a in c.list_alerts(assignee="bob", status="acknowledged")]
            self.assertEqual(mine, [alert.id])
            r = c.triage_alert(alert.id, status="closed_false_positive", note="known CI runner")
            self.assertEqual(r.alert.triage.status, pb.TRIAGE_STATUS_CLOSED_FALSE_POSITIVE)
            notes = [h.note for h in r.alert.triage.history if h.HasField("note")]
            self.assertEqual(notes, ["from python", "known CI runner"])
            s = r.suggested_suppression
            self.assertEqual(s.match.rule, alert.rule)
            created = c.create_suppression(s)
            self.assertTrue(created.id.startswith("api-"), created.id)
            self.assertIn(created.id, [x.id for x in c.list_suppressions().suppressions])
            self.assertIn(alert.id, [a.id for a in c.list_alerts(status="closed")])

    def test_triage_refuses_bad_input(self):
        with client() as c:
            alert = next(iter(c.list_alerts()))
            with self.assertRaises(CredtrailError) as e:
                c.triage_alert(alert.id, status="closed")
            self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
            with self.assertRaises(CredtrailError) as e:
                c.triage_alert("no-such-alert", status="acknowledged")
            self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main(verbosity=2)
