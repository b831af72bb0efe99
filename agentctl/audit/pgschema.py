"""The central audit store's schema in PostgreSQL: its migrations, applied by ``audit ship --init``.

Everything lives in the schema ``agentctl_audit``. The role that runs ``--init`` owns the tables and
is the only one that may UPDATE, DELETE or TRUNCATE (it owns them; nobody is granted those). Two group
roles are made (NOLOGIN):

- ``agentctl_audit_host``: each enrolled host's own login role is a member. It may SELECT and INSERT,
  and row-level security limits both to the logs of the audit key enrolled to that very role
  (``hosts.role = current_user``): a host cannot read another host's rows, nor write them.
- ``agentctl_audit_reader``: may SELECT everything (``audit --from``, ``audit verify --from``).

A log is identified by its origin together with its checkpoint key (``logs (origin, key)``). Events are
stored exactly as the host's log holds them (the RFC 8785 leaf); the queryable columns are set from
the leaf by a trigger on every INSERT and UPDATE (whatever the writer gave for them), so there is one
copy of the truth; the trigger parses the leaf once per row (six generated columns parsed it six
times: most of the server's cost of a shipped event). The fleet query reads one filter's index
``(column, time)`` backwards, newest first. ``checkpoints.received`` is set by the database,
never by the host: it is what ``ship_max_lag`` is judged by.

Never edit a released migration; add a new one.
"""

from __future__ import annotations

__all__ = ["SCHEMA", "HOST_GROUP", "READER_GROUP", "MIGRATIONS", "SCHEMA_VERSION"]

SCHEMA = "agentctl_audit"
HOST_GROUP = "agentctl_audit_host"
READER_GROUP = "agentctl_audit_reader"

MIGRATIONS: list[tuple[int, str, str]] = [
    (1, "hosts, logs, events, checkpoints, row-level security", """
CREATE TABLE agentctl_audit.hosts (
    key text PRIMARY KEY,
    role text NOT NULL,
    enrolled timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX hosts_role ON agentctl_audit.hosts (role);
CREATE TABLE agentctl_audit.logs (
    id bigserial PRIMARY KEY,
    origin text NOT NULL,
    key text NOT NULL REFERENCES agentctl_audit.hosts (key),
    role text NOT NULL DEFAULT current_user,
    created timestamptz NOT NULL DEFAULT now(),
    UNIQUE (origin, key)
);
CREATE TABLE agentctl_audit.events (
    log_id bigint NOT NULL REFERENCES agentctl_audit.logs (id),
    seq bigint NOT NULL CHECK (seq > 0),
    leaf text NOT NULL,
    leaf_hash bytea NOT NULL,
    time text GENERATED ALWAYS AS ((leaf::jsonb) ->> 'time') STORED,
    event text GENERATED ALWAYS AS ((leaf::jsonb) ->> 'event') STORED,
    principal text GENERATED ALWAYS AS ((leaf::jsonb) ->> 'principal') STORED,
    action text GENERATED ALWAYS AS ((leaf::jsonb) ->> 'action') STORED,
    outcome text GENERATED ALWAYS AS ((leaf::jsonb) ->> 'outcome') STORED,
    host text GENERATED ALWAYS AS ((leaf::jsonb) ->> 'host') STORED,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX events_time ON agentctl_audit.events (time);
CREATE INDEX events_principal_time ON agentctl_audit.events (principal, time);
CREATE INDEX events_action_time ON agentctl_audit.events (action, time);
CREATE INDEX events_host_time ON agentctl_audit.events (host, time);
CREATE TABLE agentctl_audit.checkpoints (
    log_id bigint NOT NULL REFERENCES agentctl_audit.logs (id),
    size bigint NOT NULL CHECK (size >= 0),
    root bytea NOT NULL,
    note text NOT NULL,
    received timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (log_id, size)
);
CREATE FUNCTION agentctl_audit.received_now() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.received := now(); RETURN NEW; END $$;
CREATE TRIGGER checkpoints_received BEFORE INSERT ON agentctl_audit.checkpoints
    FOR EACH ROW EXECUTE FUNCTION agentctl_audit.received_now();

ALTER TABLE agentctl_audit.hosts ENABLE ROW LEVEL SECURITY;
ALTER TABLE agentctl_audit.logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE agentctl_audit.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE agentctl_audit.checkpoints ENABLE ROW LEVEL SECURITY;

CREATE POLICY host_own ON agentctl_audit.hosts FOR SELECT TO agentctl_audit_host USING (role = current_user);
CREATE POLICY host_read ON agentctl_audit.logs FOR SELECT TO agentctl_audit_host USING (role = current_user);
CREATE POLICY host_insert ON agentctl_audit.logs FOR INSERT TO agentctl_audit_host WITH CHECK (
    role = current_user AND key IN (SELECT h.key FROM agentctl_audit.hosts h WHERE h.role = current_user));
CREATE POLICY host_read ON agentctl_audit.events FOR SELECT TO agentctl_audit_host
    USING (log_id IN (SELECT l.id FROM agentctl_audit.logs l WHERE l.role = current_user));
CREATE POLICY host_insert ON agentctl_audit.events FOR INSERT TO agentctl_audit_host
    WITH CHECK (log_id IN (SELECT l.id FROM agentctl_audit.logs l WHERE l.role = current_user));
CREATE POLICY host_read ON agentctl_audit.checkpoints FOR SELECT TO agentctl_audit_host
    USING (log_id IN (SELECT l.id FROM agentctl_audit.logs l WHERE l.role = current_user));
CREATE POLICY host_insert ON agentctl_audit.checkpoints FOR INSERT TO agentctl_audit_host
    WITH CHECK (log_id IN (SELECT l.id FROM agentctl_audit.logs l WHERE l.role = current_user));
CREATE POLICY reader_all ON agentctl_audit.hosts FOR SELECT TO agentctl_audit_reader USING (true);
CREATE POLICY reader_all ON agentctl_audit.logs FOR SELECT TO agentctl_audit_reader USING (true);
CREATE POLICY reader_all ON agentctl_audit.events FOR SELECT TO agentctl_audit_reader USING (true);
CREATE POLICY reader_all ON agentctl_audit.checkpoints FOR SELECT TO agentctl_audit_reader USING (true);

GRANT USAGE ON SCHEMA agentctl_audit TO agentctl_audit_host, agentctl_audit_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA agentctl_audit TO agentctl_audit_host, agentctl_audit_reader;
GRANT INSERT ON agentctl_audit.logs, agentctl_audit.events, agentctl_audit.checkpoints TO agentctl_audit_host;
GRANT USAGE ON SEQUENCE agentctl_audit.logs_id_seq TO agentctl_audit_host;
"""),
    (2, "event columns set by one trigger (one JSON parse per row)", """
ALTER TABLE agentctl_audit.events
    ALTER COLUMN time DROP EXPRESSION, ALTER COLUMN event DROP EXPRESSION, ALTER COLUMN principal DROP EXPRESSION,
    ALTER COLUMN action DROP EXPRESSION, ALTER COLUMN outcome DROP EXPRESSION, ALTER COLUMN host DROP EXPRESSION;
CREATE FUNCTION agentctl_audit.event_columns() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE j pg_catalog.jsonb := NEW.leaf::pg_catalog.jsonb;
BEGIN
    NEW.time := j OPERATOR(pg_catalog.->>) 'time';
    NEW.event := j OPERATOR(pg_catalog.->>) 'event';
    NEW.principal := j OPERATOR(pg_catalog.->>) 'principal';
    NEW.action := j OPERATOR(pg_catalog.->>) 'action';
    NEW.outcome := j OPERATOR(pg_catalog.->>) 'outcome';
    NEW.host := j OPERATOR(pg_catalog.->>) 'host';
    RETURN NEW;
END $$;
CREATE TRIGGER events_columns BEFORE INSERT OR UPDATE ON agentctl_audit.events
    FOR EACH ROW EXECUTE FUNCTION agentctl_audit.event_columns();
"""),
]

SCHEMA_VERSION = max(v for v, _, _ in MIGRATIONS)
