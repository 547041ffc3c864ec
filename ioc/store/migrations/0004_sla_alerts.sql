-- SLA clocks on tickets and dossiers, deadline policies, alerts, silences, the webhook outbox.

-- How long a subject may take. Tickets without a policy fall back to their category's
-- default_deadline_hours in calendar hours; dossiers without one have no deadline unless an
-- appointment date is given.
CREATE TABLE deadline_policies (
    subject text NOT NULL CHECK (subject IN ('ticket', 'dossier')),
    key     text NOT NULL,  -- a category code (tickets) or a procedure code (dossiers)
    unit    text NOT NULL CHECK (unit IN ('calendar_hours', 'working_hours', 'working_days')),
    amount  numeric NOT NULL CHECK (amount > 0),
    PRIMARY KEY (subject, key)
);

-- The SLA clock of a ticket. deadline_at (migration 0003) is the current deadline; the clock
-- pauses while the ticket waits for the citizen and stops when it is resolved.
ALTER TABLE tickets
    ADD COLUMN sla_unit             text,              -- calendar or working (how time counts)
    ADD COLUMN sla_allowed_s        double precision,  -- the time allowed, in sla_unit seconds
    ADD COLUMN due_soon_at          timestamptz,
    ADD COLUMN paused_at            timestamptz,       -- set while waiting for the citizen
    ADD COLUMN first_response_at    timestamptz,       -- the agency's first action
    ADD COLUMN resolved_at          timestamptz,
    ADD COLUMN response_working_s   double precision,  -- opened → first response, office seconds
    ADD COLUMN resolution_working_s double precision,  -- opened → resolved, office seconds, less pauses
    ADD COLUMN sla_result           text CHECK (sla_result IN ('early', 'on_time', 'late')),
    ADD COLUMN last_acted_at        timestamptz,       -- the last action by a person
    ADD COLUMN sla_stage            text,              -- next alert level due: due_soon, overdue, escalated
    ADD COLUMN next_check_at        timestamptz;       -- when the SLA engine looks at it next
-- The engine reads only what is due: an index probe, not a scan of the open tickets.
CREATE INDEX tickets_next_check ON tickets (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX tickets_resolved ON tickets (resolved_at) WHERE resolved_at IS NOT NULL;

-- A dossier's current state, folded from its events (dossier_events stays the history).
CREATE TABLE dossiers (
    dossier_id     text PRIMARY KEY,
    source         text NOT NULL,
    procedure_code text NOT NULL,
    agency         text NOT NULL,
    state          text NOT NULL,
    channel        text NOT NULL,
    online_level   text,
    paid_online    boolean NOT NULL DEFAULT false,
    digitised      boolean NOT NULL DEFAULT false,
    lon            double precision,
    lat            double precision,
    registered_at  timestamptz,
    accepted_at    timestamptz,
    appointment_at timestamptz,       -- the latest appointment date the one-stop shop gave
    deadline_at    timestamptz,       -- the appointment (or the policy's), pushed back by pauses
    sla_allowed_s  double precision,  -- office seconds allowed
    due_soon_at    timestamptz,
    paused_at      timestamptz,       -- supplement or fee requested, not yet answered
    paused_s       double precision NOT NULL DEFAULT 0,  -- office seconds paused so far
    finished_at    timestamptz,       -- result returned (or refused, withdrawn, stopped)
    result         text CHECK (result IN ('early', 'on_time', 'late')),
    used_working_s double precision,
    last_acted_at  timestamptz,
    last_event_at  timestamptz NOT NULL,
    event_count    integer NOT NULL,
    sla_stage      text,
    next_check_at  timestamptz
);
CREATE INDEX dossiers_next_check ON dossiers (next_check_at) WHERE next_check_at IS NOT NULL;
CREATE INDEX dossiers_accepted ON dossiers (accepted_at, agency);
CREATE INDEX dossiers_finished ON dossiers (finished_at, agency);

-- Form 04 (Decree 118/2025/NĐ-CP): the apology and new appointment for a late dossier.
CREATE TABLE dossier_apologies (
    id                  bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dossier_id          text NOT NULL REFERENCES dossiers (dossier_id),
    form                text NOT NULL DEFAULT '04',
    issued_at           timestamptz NOT NULL,
    agency              text NOT NULL,
    old_appointment_at  timestamptz NOT NULL,
    new_appointment_at  timestamptz NOT NULL,
    reason              text NOT NULL,
    UNIQUE (dossier_id, old_appointment_at)
);

-- Alerts: at most one active alert per subject, rule and level (the engine relies on it).
CREATE TABLE alerts (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subject_kind  text NOT NULL CHECK (subject_kind IN ('ticket', 'dossier', 'sensor')),
    subject_id    text NOT NULL,
    rule          text NOT NULL,   -- deadline, congestion, silent
    level         text NOT NULL,   -- due_soon, overdue, escalated, warning
    severity      text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    agency        text,            -- the responsible agency; NULL: unrouted
    escalated_to  text,            -- the parent agency, for escalated alerts
    category      text,
    title         text NOT NULL,
    details       jsonb NOT NULL DEFAULT '{}',
    lon           double precision,
    lat           double precision,
    raised_at     timestamptz NOT NULL,
    resolved_at   timestamptz,
    resolution    text,            -- cleared, suppressed, subject_closed
    acked_at      timestamptz,
    acked_by      text,
    digest        boolean NOT NULL,       -- delivered in the agency's digest, not at once
    notify_at     timestamptz,            -- next delivery due (first or repeat); NULL: none
    notifications integer NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX alerts_one_active ON alerts (subject_kind, subject_id, rule, level)
    WHERE resolved_at IS NULL;
CREATE INDEX alerts_active ON alerts (agency, raised_at) WHERE resolved_at IS NULL;
CREATE INDEX alerts_notify ON alerts (notify_at) WHERE notify_at IS NOT NULL;
CREATE INDEX alerts_raised ON alerts (raised_at, id);
CREATE INDEX alerts_subject ON alerts (subject_kind, subject_id);

CREATE TABLE alert_silences (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    matchers   jsonb NOT NULL,   -- {"agency": …, "rule": …, "level": …, "category": …, …}: all must match
    starts_at  timestamptz NOT NULL,
    ends_at    timestamptz NOT NULL CHECK (ends_at > starts_at),
    created_by text NOT NULL,
    comment    text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_silences_ends ON alert_silences (ends_at);

-- The durable webhook outbox: written in the transaction that raises the alert, delivered
-- at least once by the dispatcher, each attempt logged.
CREATE TABLE outbox (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    agency          text NOT NULL REFERENCES agencies (code),
    kind            text NOT NULL CHECK (kind IN ('alert', 'digest')),
    idempotency_key text NOT NULL UNIQUE,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    lease_until     timestamptz,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX outbox_agency ON outbox (agency, id);
CREATE INDEX outbox_agency_due ON outbox (agency, next_attempt_at, id) WHERE state = 'pending';

CREATE TABLE outbox_attempts (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    outbox_id   bigint NOT NULL REFERENCES outbox (id),
    at          timestamptz NOT NULL,
    url         text NOT NULL,
    status      integer,            -- the HTTP status; NULL when no response came
    error       text,
    duration_ms double precision NOT NULL
);
CREATE INDEX outbox_attempts_outbox ON outbox_attempts (outbox_id, id);
