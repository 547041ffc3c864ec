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

-- The review's satisfaction table reads ratings per local month (the zone of review_state, as the
-- ticket rollups of migration 0005): a row trigger moves each rating's count when it is given
-- or replaced. Until the first review builds the rollups (zone NULL) it does nothing; building
-- them (maps.review.rollups.refresh) fills the months from ratings.
CREATE TABLE review_rating_months (
    month         date NOT NULL,   -- the first day of the local month
    subject       text NOT NULL,
    agency        text NOT NULL,   -- '' for a ticket no agency holds
    topic         text NOT NULL,
    rated         integer NOT NULL,
    satisfied     integer NOT NULL,
    normal        integer NOT NULL,
    not_satisfied integer NOT NULL,
    PRIMARY KEY (month, subject, agency, topic)
);

CREATE FUNCTION review_rating_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    zone text;
BEGIN
    SELECT s.zone INTO zone FROM review_state s;
    IF zone IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE review_rating_months SET
            rated = rated - 1,
            satisfied = satisfied - (OLD.rating = 'satisfied')::integer,
            normal = normal - (OLD.rating = 'normal')::integer,
            not_satisfied = not_satisfied - (OLD.rating = 'not_satisfied')::integer
        WHERE month = date_trunc('month', OLD.rated_at AT TIME ZONE zone)::date AND subject = OLD.subject
          AND agency = coalesce(OLD.agency, '') AND topic = OLD.topic;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO review_rating_months AS d
        VALUES (date_trunc('month', NEW.rated_at AT TIME ZONE zone)::date, NEW.subject, coalesce(NEW.agency, ''),
                NEW.topic, 1, (NEW.rating = 'satisfied')::integer,
                (NEW.rating = 'normal')::integer, (NEW.rating = 'not_satisfied')::integer)
        ON CONFLICT (month, subject, agency, topic) DO UPDATE SET
            rated = d.rated + 1,
            satisfied = d.satisfied + EXCLUDED.satisfied,
            normal = d.normal + EXCLUDED.normal,
            not_satisfied = d.not_satisfied + EXCLUDED.not_satisfied;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER review_ratings_changed AFTER INSERT OR UPDATE OR DELETE ON ratings
    FOR EACH ROW EXECUTE FUNCTION review_rating_changed();
