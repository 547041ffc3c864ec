-- Citizens' ratings after the result: of a field report (a `feedback` event) and of a dossier
-- (a `rated` dossier event). The events stay as history; `ratings` holds the one rating that
-- counts per report or dossier, the latest by rated_at (ties: the greater external id), so a
-- replay in any order ends the same.
ALTER TABLE dossier_events ADD COLUMN rating text;
ALTER TABLE dossier_events ADD COLUMN score smallint;
ALTER TABLE dossier_events ADD COLUMN comment text;

CREATE TABLE feedback_events (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source      text NOT NULL,
    external_id text NOT NULL,
    report_id   text NOT NULL,  -- the field report's external_id at the same source
    rating      text NOT NULL CHECK (rating IN ('satisfied', 'normal', 'not_satisfied')),
    score       smallint CHECK (score BETWEEN 1 AND 5),
    comment     text,
    rated_at    timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (source, external_id)
);

CREATE TABLE ratings (
    subject     text NOT NULL CHECK (subject IN ('report', 'dossier')),
    source      text NOT NULL,
    subject_id  text NOT NULL,            -- the report's external_id, or the dossier's id
    ticket_id   bigint REFERENCES tickets (id),
    agency      text,                     -- the ticket's or dossier's agency when rated
    topic       text NOT NULL,            -- the ticket's category, or the dossier's procedure
    rating      text NOT NULL CHECK (rating IN ('satisfied', 'normal', 'not_satisfied')),
    score       smallint CHECK (score BETWEEN 1 AND 5),
    comment     text,
    rated_at    timestamptz NOT NULL,
    external_id text NOT NULL,
    PRIMARY KEY (subject, source, subject_id)
);
-- The review reads a period's ratings by their time; the index holds what it groups by.
CREATE INDEX ratings_period ON ratings (subject, rated_at) INCLUDE (agency, topic, rating);
CREATE INDEX ratings_ticket ON ratings (ticket_id, rated_at) WHERE ticket_id IS NOT NULL;
