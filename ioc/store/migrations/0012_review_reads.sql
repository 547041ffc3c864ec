-- Leaders' review, read side: dossier indicators per local month and agency, and covering
-- indexes for the "overdue now" counts, so every table of a year's review reads rows in
-- proportion to agencies × categories × months rather than to tickets and dossiers.
--
-- The dossier rollup is not summed by writers: a statement trigger appends the (month,
-- agency) keys a statement touched to review_dossier_dirty (no keys, so appending never waits
-- on another writer), and the review recomputes just those rows from the dossiers before it
-- reads (maps/review.py), with the same definitions the direct query uses. Months are the
-- local months of review_state.zone; until the first review builds the rollups (zone NULL)
-- the trigger does nothing.

-- Per local month of acceptance (received …) and of the result (finished …), per agency.
CREATE TABLE review_dossier_months (
    month        date NOT NULL,
    agency       text NOT NULL,
    received     integer NOT NULL,   -- accepted in the month
    online       integer NOT NULL,
    partial      integer NOT NULL,   -- online_level
    full_process integer NOT NULL,
    with_fee     integer NOT NULL,   -- owed a fee: a fee event, or paid online
    paid         integer NOT NULL,   -- of those, paid online
    digitised    integer NOT NULL,
    ended        integer NOT NULL,   -- finished_at in the month, with a result or not
    finished     integer NOT NULL,   -- of those, with a result (returned)
    early        integer NOT NULL,
    on_time      integer NOT NULL,
    late         integer NOT NULL,
    used_s       double precision NOT NULL,  -- sum of used_working_s of the finished …
    used_n       integer NOT NULL,           -- … and how many had one
    PRIMARY KEY (month, agency)
);

-- (month, agency) keys whose figures changed since the review last read them.
CREATE TABLE review_dossier_dirty (
    month  date NOT NULL,
    agency text NOT NULL
);

CREATE FUNCTION review_dossier_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    zone text;
BEGIN
    SELECT s.zone INTO zone FROM review_state s;
    IF zone IS NULL THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        INSERT INTO review_dossier_dirty
        SELECT DISTINCT date_trunc('month', k.at AT TIME ZONE zone)::date, n.agency
        FROM review_new n CROSS JOIN LATERAL (VALUES (n.accepted_at), (n.finished_at)) AS k (at)
        WHERE k.at IS NOT NULL;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO review_dossier_dirty
        SELECT DISTINCT date_trunc('month', k.at AT TIME ZONE zone)::date, o.agency
        FROM review_old o CROSS JOIN LATERAL (VALUES (o.accepted_at), (o.finished_at)) AS k (at)
        WHERE k.at IS NOT NULL;
    ELSE
        INSERT INTO review_dossier_dirty
        SELECT DISTINCT date_trunc('month', k.at AT TIME ZONE zone)::date, k.agency
        FROM review_old o JOIN review_new n USING (dossier_id)
        CROSS JOIN LATERAL (VALUES (o.agency, o.accepted_at), (o.agency, o.finished_at),
                                   (n.agency, n.accepted_at), (n.agency, n.finished_at))
            AS k (agency, at)
        WHERE k.at IS NOT NULL;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER review_dossiers_inserted AFTER INSERT ON dossiers
    REFERENCING NEW TABLE AS review_new
    FOR EACH STATEMENT EXECUTE FUNCTION review_dossier_changed();
CREATE TRIGGER review_dossiers_updated AFTER UPDATE ON dossiers
    REFERENCING OLD TABLE AS review_old NEW TABLE AS review_new
    FOR EACH STATEMENT EXECUTE FUNCTION review_dossier_changed();
CREATE TRIGGER review_dossiers_deleted AFTER DELETE ON dossiers
    REFERENCING OLD TABLE AS review_old
    FOR EACH STATEMENT EXECUTE FUNCTION review_dossier_changed();

-- Recomputing one (month, agency) row reads just its dossiers, and whether each owed a fee.
CREATE INDEX review_dossiers_accepted ON dossiers (agency, accepted_at);
CREATE INDEX review_dossiers_finished ON dossiers (agency, finished_at);
CREATE INDEX review_dossier_fee_ids ON dossier_events (dossier_id)
    WHERE event IN ('fee_requested', 'fee_paid');

-- "Overdue now": the open dossiers of the period, without visiting the table. (Tickets get no
-- such index: every index on tickets is paid by intake and by each SLA engine update.)
CREATE INDEX review_dossiers_open ON dossiers (accepted_at) INCLUDE (agency, deadline_at)
    WHERE state NOT IN ('result_returned', 'refused', 'withdrawn', 'stopped');

-- The next review builds every rollup again, the new one included.
UPDATE review_state SET zone = NULL;
