-- credtrail aggregator store (SQLite). Applied idempotently at every open.
--
-- Conventions:
-- * `*_ms` columns: Unix time in milliseconds (UTC), INTEGER, indexed where
--   queries filter by time. TEXT times are RFC 3339 UTC (`2026-01-02T03:04:05.123456Z`).
-- * Empty string, not NULL, for "no namespace" in primary keys.
-- * No secret ever lands here: credentials appear as `credential-id`
--   (`JTI=<uuid>`, `X509SHA256=<hex>`) or SHA-256 fingerprints only.
-- Owners: GC writes every table except `agents` (SD); GA reads.

CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Alerts: the whole Alert as JSON plus indexed copies of the filter fields.
-- `seq` is the insertion order (paging cursor / live-stream resume point).
CREATE TABLE IF NOT EXISTS alerts (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    id            TEXT NOT NULL UNIQUE,      -- deterministic: hash(rule, audit IDs)
    time          TEXT NOT NULL,             -- request time, RFC 3339
    time_ms       INTEGER NOT NULL,
    rule          TEXT NOT NULL,             -- e.g. CT1547-001
    analytic      TEXT NOT NULL,             -- AN1547 | AN1579
    severity      TEXT NOT NULL,             -- info|low|medium|high|critical
    severity_rank INTEGER NOT NULL,          -- 0 (info) .. 4 (critical)
    username      TEXT NOT NULL,
    credential_id TEXT,
    source_ip     TEXT,
    source_class  TEXT NOT NULL,
    node          TEXT,                      -- node the source resolved to / evidence node
    namespace     TEXT,                      -- request namespace
    suppressed_by TEXT,                      -- suppression id or `maintenance:<name>`; NULL = active
    created_ms    INTEGER NOT NULL,          -- when stored
    json          TEXT NOT NULL              -- serde_json of crate::alert::Alert
);
CREATE INDEX IF NOT EXISTS alerts_time     ON alerts(time_ms);
CREATE INDEX IF NOT EXISTS alerts_rule     ON alerts(rule, time_ms);
CREATE INDEX IF NOT EXISTS alerts_analytic ON alerts(analytic, time_ms);
CREATE INDEX IF NOT EXISTS alerts_severity ON alerts(severity_rank, time_ms);
CREATE INDEX IF NOT EXISTS alerts_username ON alerts(username, time_ms);
CREATE INDEX IF NOT EXISTS alerts_cred     ON alerts(credential_id, time_ms);
CREATE INDEX IF NOT EXISTS alerts_src      ON alerts(source_ip, time_ms);
CREATE INDEX IF NOT EXISTS alerts_node     ON alerts(node, time_ms);
CREATE INDEX IF NOT EXISTS alerts_ns       ON alerts(namespace, time_ms);
-- The default list (active alerts, newest first) without visiting suppressed ones.
CREATE INDEX IF NOT EXISTS alerts_active   ON alerts(time_ms) WHERE suppressed_by IS NULL;

-- Every node an alert names (`alerts.node`, evidence nodes, expected `node`
-- locations): the index behind `?node=` (schema version 3; before, a json_each
-- scan of every alert). Rows go with their alert.
CREATE TABLE IF NOT EXISTS alert_nodes (
    node TEXT NOT NULL,
    seq  INTEGER NOT NULL,                 -- alerts.seq
    PRIMARY KEY (node, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS alert_nodes_seq ON alert_nodes(seq);
CREATE TRIGGER IF NOT EXISTS alert_nodes_follow AFTER DELETE ON alerts BEGIN
    DELETE FROM alert_nodes WHERE seq = old.seq;
END;

-- One row per accepted audit batch (webhook POST, log read, replay file).
CREATE TABLE IF NOT EXISTS audit_batches (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,               -- webhook | log:<path> | replay | ...
    received_ms INTEGER NOT NULL,
    events      INTEGER NOT NULL,            -- events in the batch
    accepted    INTEGER NOT NULL,            -- new (not duplicate) events
    duplicates  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_batches_time ON audit_batches(received_ms);

-- Accepted audit events: the dedupe record, one row per event (auditID, stage),
-- kept for the retention period. Deliberately narrow (schema version 2): it is
-- written for every event at ingest rate and nothing reads more than this. The
-- request itself lives on in the alerts it raised (`alerts.json`) and in the
-- inventories (credential_uses, bindings, roles, baselines).
-- The key leads with the event's own time: a resent event (webhook retry, log
-- re-read) is the same event with the same requestReceivedTimestamp, so it is
-- still found as a duplicate, while new events append at the end of the
-- B-tree instead of landing at a random page for their random auditID (which
-- made every batch rewrite pages all over the table), and retention deletes a
-- key range without another index. A client-chosen Audit-ID reused for a new
-- request at another time is therefore stored and judged, not dropped.
CREATE TABLE IF NOT EXISTS audit_events (
    time_ms     INTEGER NOT NULL,            -- requestReceivedTimestamp (v1beta1: timestamp)
    audit_id    TEXT NOT NULL,
    stage       TEXT NOT NULL,
    batch_id    INTEGER NOT NULL,            -- audit_batches.id of the batch that delivered it
    PRIMARY KEY (time_ms, audit_id, stage)
) WITHOUT ROWID;

-- Agent observations, deduplicated by (node, observation id): keyed by node
-- (schema version 3) so one node cannot pre-claim another node's ids.
-- `json` is the model's serde form.
CREATE TABLE IF NOT EXISTS observations (
    node    TEXT NOT NULL,
    id      TEXT NOT NULL,
    time_ms INTEGER NOT NULL,
    type    TEXT NOT NULL,                   -- node_info | credential_read | api_connect | loss
    json    TEXT NOT NULL,
    PRIMARY KEY (node, id)
);
CREATE INDEX IF NOT EXISTS observations_time ON observations(time_ms);
CREATE INDEX IF NOT EXISTS observations_node ON observations(node, time_ms);

-- Credential inventory, where read: one row per (credential, node, process, path).
-- credential_key: the credential-id when known (JTI=..., X509SHA256=...),
-- else `sha256:<fingerprint>`.
CREATE TABLE IF NOT EXISTS credential_reads (
    credential_key TEXT NOT NULL,
    kind           TEXT NOT NULL,            -- service_account_token | kubeconfig | client_certificate | ...
    username       TEXT,                     -- identity the credential carries (claims sub, cert CN)
    fingerprint    TEXT,                     -- SHA-256 of the token/file
    node           TEXT NOT NULL,
    pod_namespace  TEXT,
    pod_name       TEXT,
    pod_uid        TEXT,
    container_id   TEXT,
    tgid           INTEGER NOT NULL,         -- 0 for the agent's start-up scan
    comm           TEXT,
    exe            TEXT,
    path           TEXT NOT NULL,
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    reads          INTEGER NOT NULL,
    observation_id TEXT NOT NULL,            -- latest observation
    expires_ms     INTEGER,                  -- the token's exp: not loaded into detection past it (NULL: no exp)
    PRIMARY KEY (credential_key, node, tgid, path)
);
CREATE INDEX IF NOT EXISTS credential_reads_user ON credential_reads(username);
CREATE INDEX IF NOT EXISTS credential_reads_node ON credential_reads(node);

-- Credential inventory, where used: one row per (credential, source IP).
-- credential_key as above, or `user:<username>` when the audit event carries no credential-id.
CREATE TABLE IF NOT EXISTS credential_uses (
    credential_key TEXT NOT NULL,
    username       TEXT NOT NULL,
    source_ip      TEXT NOT NULL,
    source_class   TEXT NOT NULL,
    node           TEXT,                     -- node the source resolved to
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    last_audit_id  TEXT NOT NULL,
    PRIMARY KEY (credential_key, source_ip)
);
CREATE INDEX IF NOT EXISTS credential_uses_user ON credential_uses(username);

-- Bindings inventory: the latest known state of each (Cluster)RoleBinding.
CREATE TABLE IF NOT EXISTS bindings (
    kind           TEXT NOT NULL,            -- RoleBinding | ClusterRoleBinding
    namespace      TEXT NOT NULL,            -- '' for ClusterRoleBinding
    name           TEXT NOT NULL,
    role_kind      TEXT,                     -- NULL when only seen at Metadata level
    role_name      TEXT,
    subjects       TEXT NOT NULL,            -- JSON [{kind,name,namespace}]
    high_privilege INTEGER NOT NULL,         -- 0/1, as judged at the last change
    last_verb      TEXT NOT NULL,
    last_actor     TEXT NOT NULL,
    last_source_ip TEXT,
    last_audit_id  TEXT NOT NULL,
    last_change_ms INTEGER NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, namespace, name)
);

-- Roles learned from audit events (create/update/patch bodies) and policy.
CREATE TABLE IF NOT EXISTS roles (
    kind           TEXT NOT NULL,            -- Role | ClusterRole
    namespace      TEXT NOT NULL,
    name           TEXT NOT NULL,
    rules          TEXT NOT NULL,            -- JSON PolicyRule[]
    high_privilege INTEGER NOT NULL,
    reasons        TEXT NOT NULL,            -- JSON [string]: why high privilege
    origin         TEXT NOT NULL,            -- audit | policy
    audit_id       TEXT,
    updated_ms     INTEGER NOT NULL,
    deleted        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, namespace, name)
);

-- Learned baselines: source IPs seen per identity.
CREATE TABLE IF NOT EXISTS baselines (
    username      TEXT NOT NULL,
    source_ip     TEXT NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    count         INTEGER NOT NULL,
    learned       INTEGER NOT NULL,          -- 1: seen inside the identity's learning window
    PRIMARY KEY (username, source_ip)
) WITHOUT ROWID;                             -- keyed by what it is looked up by: one B-tree, not two
-- When each identity was first seen (start of its learning window).
CREATE TABLE IF NOT EXISTS identities (
    username      TEXT PRIMARY KEY,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL
) WITHOUT ROWID;

-- Suppressions: from the policy file (origin=policy) or the API (origin=api).
CREATE TABLE IF NOT EXISTS suppressions (
    id          TEXT PRIMARY KEY,
    owner       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created     TEXT NOT NULL,               -- RFC 3339
    expires     TEXT NOT NULL,               -- RFC 3339
    expires_ms  INTEGER NOT NULL,
    matcher     TEXT NOT NULL,               -- JSON crate::policy::SuppressionMatch
    origin      TEXT NOT NULL,               -- policy | api
    hits        INTEGER NOT NULL DEFAULT 0,
    last_hit_ms INTEGER,
    created_by  TEXT,                        -- principal that created it (API ones)
    deleted_by  TEXT,                        -- principal that deleted it
    deleted     TEXT                         -- RFC 3339; set = deleted (kept for the record)
);

-- Coverage: audit streams alive, by source.
CREATE TABLE IF NOT EXISTS coverage_audit_sources (
    source        TEXT PRIMARY KEY,           -- webhook | log:<path> | replay
    last_event_ms INTEGER NOT NULL,           -- newest requestReceivedTimestamp
    last_recv_ms  INTEGER NOT NULL,           -- wall clock of the last accepted batch
    events        INTEGER NOT NULL,
    rejected      INTEGER NOT NULL DEFAULT 0
);
-- Coverage: audit levels seen for RBAC resources (Metadata-only bindings = blind spot).
CREATE TABLE IF NOT EXISTS coverage_rbac_levels (
    resource      TEXT NOT NULL,              -- rolebindings | clusterrolebindings | roles | clusterroles
    level         TEXT NOT NULL,              -- Metadata | Request | RequestResponse
    count         INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    last_audit_id TEXT NOT NULL,
    PRIMARY KEY (resource, level)
);

-- Coverage: binding writes by approved automation logged at Metadata level
-- (counted, not alerted), with the latest one as an example.
CREATE TABLE IF NOT EXISTS coverage_automation_blind (
    automation    TEXT NOT NULL,              -- policy automation[].name
    resource      TEXT NOT NULL,              -- rolebindings | clusterrolebindings
    count         INTEGER NOT NULL,
    last_seen_ms  INTEGER NOT NULL,
    example       TEXT NOT NULL,              -- JSON summary of the latest event
    PRIMARY KEY (automation, resource)
);

-- Node networking as agents reported it (node_info), for classifying source IPs.
CREATE TABLE IF NOT EXISTS node_network (
    node       TEXT PRIMARY KEY,
    addresses  TEXT NOT NULL,                 -- JSON [ip]
    pod_cidrs  TEXT NOT NULL,                 -- JSON [cidr]
    updated_ms INTEGER NOT NULL
);

-- Log backend: where each tailed audit log was read up to.
CREATE TABLE IF NOT EXISTS log_offsets (
    path       TEXT PRIMARY KEY,
    dev        INTEGER NOT NULL,
    inode      INTEGER NOT NULL,
    offset     INTEGER NOT NULL,              -- bytes consumed (always at a line end)
    updated_ms INTEGER NOT NULL
);

-- Agents (SD writes/reads via store/agents.rs).
CREATE TABLE IF NOT EXISTS agents (
    node          TEXT PRIMARY KEY,
    agent_version TEXT,
    kernel        TEXT,
    hooks         TEXT,     -- JSON
    addresses     TEXT,     -- JSON
    first_seen    TEXT,
    last_contact  TEXT,
    last_seq      INTEGER,
    drops         TEXT,     -- JSON {"stage": total}, as the agent's last heartbeat said
    connected     INTEGER,
    stream_epoch  INTEGER   -- the agent's stream epoch (u64 bits); last_seq counts within it
);

-- What the agent stream refused from each node (node = the client
-- certificate's node): claims for another node, addresses or pod CIDRs outside
-- the policy's ranges (agents/validate.rs). Shown in coverage.
CREATE TABLE IF NOT EXISTS agent_refusals (
    node         TEXT NOT NULL,
    reason       TEXT NOT NULL,
    count        INTEGER NOT NULL,
    last_ms      INTEGER NOT NULL,
    last_message TEXT NOT NULL,
    PRIMARY KEY (node, reason)
);
