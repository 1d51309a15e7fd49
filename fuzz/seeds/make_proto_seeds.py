#!/usr/bin/env python3
"""Writes the protobuf seeds of the agent and API-body fuzz targets
(hand-encoded: no protobuf package needed). Run from fuzz/seeds/."""

import struct


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, payload):
    return varint(num << 3 | wire) + payload


def vi(num, n):
    return field(num, 0, varint(n))


def ld(num, data):
    if isinstance(data, str):
        data = data.encode()
    return field(num, 2, varint(len(data)) + data)


def ts(secs, nanos=0):
    return vi(1, secs) + (vi(2, nanos) if nanos else b"")


NOW = 1_767_225_600  # 2026-01-01T00:00:00Z, the fuzz targets' receive time

node_info = (
    ld(1, "node-a") + ld(2, "10.0.0.5") + ld(2, "fd00::5") + ld(3, "10.244.1.0/24")
    + ld(4, "0.1.0") + ld(5, "6.1.0") + ld(6, "lsm") + ld(6, "cgroup_connect")
)
process = vi(1, 4242) + vi(2, 4242) + vi(3, 1) + vi(4, 0) + ld(5, "curl") + ld(6, "/usr/bin/curl") + ld(7, "curl")
workload = ld(3, "containerd://abc") + ld(5, "pod-uid-1") + ld(6, "default") + ld(7, "app-0")
api_connect = vi(1, 5) + ld(2, process) + ld(3, workload) + ld(4, ld(1, "10.0.0.5") + vi(2, 40000)) + ld(5, ld(1, "10.96.0.1") + vi(2, 443))
cred_read = vi(1, 1) + ld(2, process) + ld(3, workload) + ld(4, "/var/run/secrets/kubernetes.io/serviceaccount/token") + vi(7, 1)
loss = ld(1, "ring_buffer") + vi(2, 3) + vi(3, 7)


def obs(i, event_field, payload, secs=NOW):
    return ld(1, f"node-a/boot/{i}") + ld(2, ts(secs, 5000)) + ld(3, "node-a") + ld(event_field, payload)


batch = vi(1, 1) + b"".join(
    ld(2, o)
    for o in [
        obs(1, 10, node_info),
        obs(2, 12, api_connect),
        obs(3, 11, cred_read),
        obs(4, 13, loss),
    ]
)
# Times at the edges: before 2000, far future, chrono's limits.
edges = vi(1, 9) + b"".join(
    ld(2, obs(10 + i, 12, api_connect, secs))
    for i, secs in enumerate([0, 946_684_799, NOW + 86_401, 8_210_266_876_799, (1 << 63) - 1])
)

match = ld(1, "CT1547-001") + ld(3, "system:serviceaccount:ci:*") + ld(5, "10.0.0.0/8")
create = ld(1, "soc") + ld(2, "known CI runner") + ld(3, ts(NOW + 86_400)) + ld(4, match)
alert_filter = ld(1, ts(NOW - 3600)) + ld(2, ts(NOW)) + ld(3, "CT1547-001") + vi(5, 3) + ld(6, "u")

seeds = {
    "agent_node_info/node_info.bin": node_info,
    "agent_batch/batch.bin": batch,
    "agent_batch/time_edges.bin": edges,
    "api_bodies/grpc_create_suppression.bin": b"\x01" + create,
    "api_bodies/grpc_alert_filter.bin": b"\x02" + alert_filter,
}
for path, data in seeds.items():
    with open(path, "wb") as f:
        f.write(data)
