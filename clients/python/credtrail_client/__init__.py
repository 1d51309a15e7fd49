"""A small client for the credtrail query API (gRPC).

    from credtrail_client import Client

    with Client("aggregator.credtrail.svc:9090", token=TOKEN, ca_file="ca.pem") as c:
        for alert in c.list_alerts(analytic="AN1547", min_severity="high"):
            print(alert.id, alert.rule, alert.identity.username)
        for event in c.stream_alerts():
            ...

The messages are the generated ones (``credtrail_client.pb``: the
``query_pb2`` module of proto/proto/credtrail/query/v1/query.proto; run
``python generate.py`` first). The token goes in the ``authorization``
metadata as ``Bearer <token>`` on every call; with ``ca_file`` the channel
is TLS, verified against that CA (``server_name`` overrides the name checked,
for a certificate issued to a Service name while you connect to an
address). Plaintext needs ``insecure_plaintext=True`` and is meant for
loopback only.
"""

from __future__ import annotations

import pathlib
import sys
from typing import Iterator, Optional

import grpc

_GEN = pathlib.Path(__file__).resolve().parent / "_gen"
if not (_GEN / "credtrail" / "query" / "v1" / "query_pb2.py").exists():
    raise ImportError(
        f"credtrail_client: the generated modules are missing in {_GEN}; run `python generate.py`"
    )
# The generated modules import each other as `credtrail.query.v1…`.
if str(_GEN) not in sys.path:
    sys.path.insert(0, str(_GEN))

from credtrail.query.v1 import query_pb2 as pb  # noqa: E402
from credtrail.query.v1 import query_pb2_grpc as pb_grpc  # noqa: E402

__all__ = ["AlertStream", "Client", "CredtrailError", "pb"]

_SEVERITIES = {
    "info": "SEVERITY_INFO",
    "low": "SEVERITY_LOW",
    "medium": "SEVERITY_MEDIUM",
    "high": "SEVERITY_HIGH",
    "critical": "SEVERITY_CRITICAL",
}


class CredtrailError(Exception):
    """A call the aggregator refused or could not answer (code and message)."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message


def _wrap(e: grpc.RpcError) -> CredtrailError:
    return CredtrailError(e.code(), e.details() or "")


class AlertStream:
    """An open ``StreamAlerts`` call: iterate for ``StreamAlertsResponse``s."""

    def __init__(self, call):
        self._call = call

    def wait_ready(self, timeout: float = 5.0) -> None:
        """Blocks until the server accepted the stream (its headers arrived),
        so an alert raised from now on will be sent; raises on refusal."""
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(1) as ex:
            fut = ex.submit(self._call.initial_metadata)
            try:
                fut.result(timeout=timeout)
            except concurrent.futures.TimeoutError:
                self.cancel()
                raise CredtrailError(grpc.StatusCode.DEADLINE_EXCEEDED, "stream not accepted in time") from None
        if self._call.done() and self._call.code() != grpc.StatusCode.OK:
            raise CredtrailError(self._call.code(), self._call.details() or "")

    def __iter__(self) -> Iterator["pb.StreamAlertsResponse"]:
        try:
            yield from self._call
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                raise _wrap(e) from None

    def cancel(self) -> None:
        self._call.cancel()


class Client:
    """A connection to the aggregator's gRPC query listener."""

    def __init__(
        self,
        target: str,
        token: str,
        ca_file: Optional[str] = None,
        *,
        server_name: Optional[str] = None,
        insecure_plaintext: bool = False,
        timeout: float = 10.0,
    ):
        if not token or any(c in token for c in "\r\n "):
            raise ValueError("token: empty or contains whitespace")
        if ca_file:
            with open(ca_file, "rb") as f:
                creds = grpc.ssl_channel_credentials(root_certificates=f.read())
            options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
            self._channel = grpc.secure_channel(target, creds, options=options)
        elif insecure_plaintext:
            self._channel = grpc.insecure_channel(target)
        else:
            raise ValueError("ca_file is required (TLS); insecure_plaintext=True for loopback only")
        self._metadata = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self.stub = pb_grpc.QueryServiceStub(self._channel)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method, request):
        try:
            return method(request, metadata=self._metadata, timeout=self._timeout)
        except grpc.RpcError as e:
            raise _wrap(e) from None

    @staticmethod
    def alert_filter(**fields) -> "pb.AlertFilter":
        """An ``AlertFilter`` from keyword fields (``rule``, ``analytic``,
        ``identity``, ``namespace``, ``node``, ``source_ip``, ``assignee``, …;
        ``min_severity`` as ``"high"``, ``status`` as ``"open"``/``"closed"``…,
        or the enum values)."""
        sev = fields.pop("min_severity", None)
        status = fields.pop("status", None)
        f = pb.AlertFilter(**{k: v for k, v in fields.items() if v is not None})
        if status is not None:
            f.status = (
                pb.TriageStatus.Value("TRIAGE_STATUS_" + status.upper())
                if isinstance(status, str)
                else status
            )
        if sev is not None:
            f.min_severity = (
                pb.Severity.Value(_SEVERITIES[sev]) if isinstance(sev, str) else sev
            )
        return f

    def list_alerts(self, page_size: int = 100, **filter_fields) -> Iterator["pb.Alert"]:
        """Every matching alert, newest first, following the page tokens."""
        token = ""
        f = self.alert_filter(**filter_fields)
        while True:
            resp = self._call(
                self.stub.ListAlerts,
                pb.ListAlertsRequest(filter=f, page_size=page_size, page_token=token),
            )
            yield from resp.alerts
            token = resp.next_page_token
            if not token:
                return

    def get_alert(self, alert_id: str) -> "pb.Alert":
        return self._call(self.stub.GetAlert, pb.GetAlertRequest(id=alert_id))

    def stream_alerts(self, **filter_fields) -> "AlertStream":
        """Live events (new alerts, ``skipped`` counts; triage changes where the
        server sends them): iterate the returned stream; ``cancel()`` ends it."""
        call = self.stub.StreamAlerts(
            pb.StreamAlertsRequest(filter=self.alert_filter(**filter_fields)),
            metadata=self._metadata,
        )
        return AlertStream(call)

    def triage_alert(
        self,
        alert_id: str,
        status: Optional[str] = None,
        assignee: Optional[str] = None,
        note: Optional[str] = None,
    ) -> "pb.TriageAlertResponse":
        """Changes an alert's triage (role responder). ``status`` as
        ``"acknowledged"``, ``"closed_false_positive"``… (or the enum value);
        ``assignee=""`` unassigns; ``None`` leaves a field. A false-positive
        close answers ``suggested_suppression``, a ``CreateSuppressionRequest``
        to pass to :meth:`create_suppression` as is."""
        req = pb.TriageAlertRequest(id=alert_id)
        if status is not None:
            req.status = (
                pb.TriageStatus.Value("TRIAGE_STATUS_" + status.upper())
                if isinstance(status, str)
                else status
            )
        if assignee is not None:
            req.assignee = assignee
        if note is not None:
            req.note = note
        return self._call(self.stub.TriageAlert, req)

    def list_suppressions(self) -> "pb.ListSuppressionsResponse":
        return self._call(self.stub.ListSuppressions, pb.ListSuppressionsRequest())

    def create_suppression(self, request: "pb.CreateSuppressionRequest") -> "pb.Suppression":
        return self._call(self.stub.CreateSuppression, request)
