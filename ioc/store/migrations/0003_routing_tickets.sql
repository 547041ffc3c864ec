-- Jurisdictions (versioned boundary sets), agencies, responsibility rules, tickets.

CREATE TABLE boundary_sets (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    level          text NOT NULL CHECK (level IN ('province', 'district', 'ward')),
    effective_from date NOT NULL,
    source_name    text NOT NULL,
    feature_count  integer NOT NULL,
    imported_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (level, effective_from)
);

CREATE TABLE jurisdictions (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    set_id      bigint NOT NULL REFERENCES boundary_sets (id) ON DELETE CASCADE,
    level       text NOT NULL,
    code        text NOT NULL,
    name        text NOT NULL,
    parent_code text,
    geometry    bytea NOT NULL,  -- WKB, EPSG:4326, valid (repaired on import)
    min_lon     double precision NOT NULL,
    min_lat     double precision NOT NULL,
    max_lon     double precision NOT NULL,
    max_lat     double precision NOT NULL,
    UNIQUE (set_id, code)
);

CREATE TABLE agencies (
    code           text PRIMARY KEY,
    name_vi        text NOT NULL,
    parent_code    text REFERENCES agencies (code),
    webhook_url    text,
    webhook_secret text
);

-- The catch-all operator queue: reports no rule claims.
INSERT INTO agencies (code, name_vi) VALUES
    ('ioc', 'Trung tâm Giám sát, điều hành đô thị thông minh (IOC)');

CREATE TABLE responsibility_rules (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    category          text REFERENCES categories (code),
    level             text CHECK (level IN ('province', 'district', 'ward')),
    jurisdiction_code text,
    agency            text NOT NULL REFERENCES agencies (code),
    note              text NOT NULL DEFAULT ''
);

CREATE TABLE tickets (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    report_id          bigint NOT NULL UNIQUE REFERENCES field_reports (id),
    category           text NOT NULL,
    state              text NOT NULL,
    agency             text REFERENCES agencies (code),  -- NULL: the unrouted queue
    jurisdiction_code  text,
    jurisdiction_level text,
    routing            jsonb NOT NULL,
    lon                double precision NOT NULL,
    lat                double precision NOT NULL,
    opened_at          timestamptz NOT NULL,
    deadline_at        timestamptz,
    report_count       integer NOT NULL DEFAULT 1,
    assignee           text,
    updated_at         timestamptz NOT NULL,
    closed_at          timestamptz
);
CREATE INDEX tickets_open_by_category ON tickets (category, opened_at)
    WHERE state NOT IN ('resolved', 'closed', 'rejected');
CREATE INDEX tickets_agency_queue ON tickets (agency, deadline_at, id);
CREATE INDEX tickets_updated ON tickets (updated_at, id);

ALTER TABLE field_reports ADD COLUMN ticket_id bigint REFERENCES tickets (id);
CREATE INDEX field_reports_ticket ON field_reports (ticket_id);

CREATE TABLE ticket_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    ticket_id   bigint NOT NULL REFERENCES tickets (id),
    at          timestamptz NOT NULL,
    actor       text NOT NULL,
    action      text NOT NULL,
    from_state  text,
    to_state    text NOT NULL,
    from_agency text,
    to_agency   text,
    note        text NOT NULL DEFAULT ''
);
CREATE INDEX ticket_events_ticket ON ticket_events (ticket_id, id);
