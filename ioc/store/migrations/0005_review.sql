-- Leaders' review: ticket rollups kept current by statement triggers, so a review over a year
-- reads summary rows (counts per local day, time histograms per local month) rather than
-- every ticket of the period.
--
-- Writers never contend: a trigger appends signed changes to the *_delta tables, and the
-- review folds them into the rollups (maps/review.py) before it reads. The rollups are cut in
-- local days and months of the zone recorded in review_state; until the first review builds
-- them (zone NULL) the triggers do nothing.

-- Office seconds → histogram bin: bin b holds [1.02^b, 1.02^(b+1)) seconds, so a percentile
-- read from the bins is within 2 % of the exact one; bin -1 holds anything under a second.
CREATE FUNCTION review_bin(seconds double precision) RETURNS smallint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT CASE WHEN seconds < 1 THEN -1 ELSE floor(ln(seconds) / ln(1.02))::smallint END $$;

CREATE TABLE review_state (
    id    boolean PRIMARY KEY DEFAULT true CHECK (id),
    zone  text,                          -- the zone of the days and months; NULL: not built
    built timestamptz                    -- when the rollups were last built from the tickets
);
INSERT INTO review_state DEFAULT VALUES;

-- Tickets opened per local day, agency ('' for the unrouted queue) and category.
CREATE TABLE review_ticket_days (
    day       date NOT NULL,
    agency    text NOT NULL,
    category  text NOT NULL,
    received  integer NOT NULL,
    responded integer NOT NULL,   -- with a first response by a person
    resolved  integer NOT NULL,
    early     integer NOT NULL,   -- sla_result
    on_time   integer NOT NULL,
    late      integer NOT NULL,
    PRIMARY KEY (day, agency, category)
);

-- Histograms of office time, per local month of opening: measure 'r' response
-- (response_working_s), 's' resolution (resolution_working_s). Rows are kept per agency and
-- category, per agency alone (category '*'), per category alone (agency '*') and for all
-- ('*', '*'), so every table of the review reads only the rows it shows.
CREATE TABLE review_ticket_bins (
    month    date NOT NULL,
    agency   text NOT NULL,
    category text NOT NULL,
    measure  "char" NOT NULL,
    bin      smallint NOT NULL,
    n        integer NOT NULL,
    PRIMARY KEY (agency, month, category, measure, bin) INCLUDE (n)
);
CREATE INDEX review_ticket_bins_category ON review_ticket_bins (category, month, agency)
    INCLUDE (measure, bin, n);

-- Signed changes not yet folded in (no keys: appending never waits on another writer).
CREATE TABLE review_ticket_days_delta (LIKE review_ticket_days);
CREATE TABLE review_ticket_bins_delta (LIKE review_ticket_bins);

-- Appends one statement's changes to the tickets, as signed counts, to the delta tables.
CREATE FUNCTION review_ticket_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    zone text;
    source text;
    -- Only what the review reads; the SLA engine's bookkeeping updates add nothing.
    changed constant text :=
        '(o.opened_at, o.agency, o.category, o.first_response_at, o.resolved_at,'
        ' o.response_working_s, o.resolution_working_s, o.sla_result) IS DISTINCT FROM'
        ' (n.opened_at, n.agency, n.category, n.first_response_at, n.resolved_at,'
        ' n.response_working_s, n.resolution_working_s, n.sla_result)';
BEGIN
    SELECT s.zone INTO zone FROM review_state s;
    IF zone IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        source := 'SELECT 1 AS sign, n.* FROM review_new n';
    ELSIF TG_OP = 'DELETE' THEN
        source := 'SELECT -1 AS sign, o.* FROM review_old o';
    ELSE
        source := 'SELECT -1 AS sign, o.* FROM review_old o JOIN review_new n USING (id) WHERE '
            || changed || ' UNION ALL SELECT 1, n.* FROM review_old o JOIN review_new n'
            || ' USING (id) WHERE ' || changed;
    END IF;
    EXECUTE format(
        $q$WITH changes AS (%s),
        keyed AS (
            SELECT sign, (opened_at AT TIME ZONE %L)::date AS day,
                   coalesce(agency, '') AS agency, category, first_response_at, resolved_at,
                   response_working_s, resolution_working_s, sla_result
            FROM changes),
        days AS (
            INSERT INTO review_ticket_days_delta
            SELECT day, agency, category, sum(sign),
                   coalesce(sum(sign) FILTER (WHERE first_response_at IS NOT NULL), 0),
                   coalesce(sum(sign) FILTER (WHERE resolved_at IS NOT NULL), 0),
                   coalesce(sum(sign) FILTER (WHERE sla_result = 'early'), 0),
                   coalesce(sum(sign) FILTER (WHERE sla_result = 'on_time'), 0),
                   coalesce(sum(sign) FILTER (WHERE sla_result = 'late'), 0)
            FROM keyed GROUP BY 1, 2, 3)
        INSERT INTO review_ticket_bins_delta
        SELECT date_trunc('month', k.day)::date, a.agency, a.category, m.measure,
               review_bin(m.seconds), sum(k.sign)
        FROM keyed k
        CROSS JOIN LATERAL (VALUES ('r'::"char", k.response_working_s),
                                   ('s'::"char", k.resolution_working_s)) AS m (measure, seconds)
        CROSS JOIN LATERAL (VALUES (k.agency, k.category), (k.agency, '*'),
                                   ('*', k.category), ('*', '*')) AS a (agency, category)
        WHERE m.seconds IS NOT NULL
        GROUP BY 1, 2, 3, 4, 5
        HAVING sum(k.sign) <> 0$q$,
        source, zone);
    RETURN NULL;
END
$$;

CREATE TRIGGER review_tickets_inserted AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS review_new
    FOR EACH STATEMENT EXECUTE FUNCTION review_ticket_changed();
CREATE TRIGGER review_tickets_updated AFTER UPDATE ON tickets
    REFERENCING OLD TABLE AS review_old NEW TABLE AS review_new
    FOR EACH STATEMENT EXECUTE FUNCTION review_ticket_changed();
CREATE TRIGGER review_tickets_deleted AFTER DELETE ON tickets
    REFERENCING OLD TABLE AS review_old
    FOR EACH STATEMENT EXECUTE FUNCTION review_ticket_changed();

-- Dossiers that owed a fee, for the online payment rate: a probe of the few fee events.
CREATE INDEX review_dossier_fees ON dossier_events (at, dossier_id)
    WHERE event IN ('fee_requested', 'fee_paid');
