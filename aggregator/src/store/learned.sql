-- Facts learned from the audit stream (detect/cluster.rs), for the nodes inventory.
CREATE TABLE IF NOT EXISTS learned_nodes (
    node       TEXT PRIMARY KEY,
    uid        TEXT,
    facts      TEXT NOT NULL,                -- JSON {addresses: [[ip, provenance]], pod_cidrs: [[cidr, provenance]]}
    released   INTEGER NOT NULL DEFAULT 0,   -- 1: deleted in the audit stream, or its agent went silent
    release_audit_id TEXT,
    updated_ms INTEGER NOT NULL
);
-- Token lineage: every TokenRequest that named its token (detect/lineage.rs).
CREATE TABLE IF NOT EXISTS token_lineage (
    jti                TEXT PRIMARY KEY,     -- JTI=<uuid>
    service_account    TEXT NOT NULL,
    minter             TEXT NOT NULL,
    minter_credential  TEXT,
    source_ip          TEXT,
    bound_to           TEXT,
    expiration_seconds INTEGER,
    user_agent         TEXT,
    incident           TEXT,
    minter_expected    TEXT NOT NULL DEFAULT '{}', -- JSON {nodes, pod_uids, cidrs}: carried by the token
    audit_id           TEXT NOT NULL,
    time_ms            INTEGER NOT NULL
);
-- Which event taught each baseline source (reviewable; the learned flag mirrors baselines.learned).
CREATE TABLE IF NOT EXISTS baseline_sources (
    username  TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    learned   INTEGER NOT NULL,
    audit_id  TEXT NOT NULL,
    time_ms   INTEGER NOT NULL,
    PRIMARY KEY (username, source_ip)
);
