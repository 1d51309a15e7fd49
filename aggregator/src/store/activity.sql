-- AN1547 alerts' activity (detect/activity.rs; docs/API.md, *Context for the responder*).
-- state: JSON of detect::activity::AlertActivity (counts, summary groups; bounded).
CREATE TABLE IF NOT EXISTS alert_activity (
    alert_id       TEXT PRIMARY KEY,
    credential_key TEXT NOT NULL,
    source_ip      TEXT NOT NULL,
    last_ms        INTEGER NOT NULL,
    state          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_activity_last ON alert_activity(last_ms);
-- The listed requests (at most detect::activity::MAX_LISTED per alert).
CREATE TABLE IF NOT EXISTS alert_activity_entries (
    alert_id TEXT NOT NULL,
    time_ms  INTEGER NOT NULL,
    entry    TEXT NOT NULL                   -- JSON of detect::activity::ActivityEntry
);
CREATE INDEX IF NOT EXISTS alert_activity_entries_alert ON alert_activity_entries(alert_id, time_ms);
-- Credential inventory, where used, beyond credential_uses: the pod the
-- source resolved to and the user agents seen from it (at most
-- store::inventory_ctx::MAX_AGENTS per credential and source).
CREATE TABLE IF NOT EXISTS credential_use_agents (
    credential_key TEXT NOT NULL,
    source_ip      TEXT NOT NULL,
    user_agent     TEXT NOT NULL,            -- '' when none was sent
    pod            TEXT,                     -- ns/name the source resolved to (latest)
    first_seen_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER NOT NULL,
    count          INTEGER NOT NULL,
    PRIMARY KEY (credential_key, source_ip, user_agent)
);
CREATE INDEX IF NOT EXISTS credential_use_agents_last ON credential_use_agents(last_seen_ms);
