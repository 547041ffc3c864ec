-- The review's ticket trigger with its statements planned once per session, not at every call.
--
-- 0005 built the fold of a statement's changes as text and ran it with EXECUTE, so every INSERT,
-- UPDATE or DELETE of tickets parsed and planned it again: about 70 µs of database CPU per
-- single field report, more than the rows cost. The fold now lives in review_fold_tickets, a
-- PL/pgSQL function of two arrays of ticket rows (those to add, those to take away) whose
-- statements are static, so PL/pgSQL keeps their plans; the zone is a variable of it. The
-- trigger collects the rows from its transition tables, also with static statements, and does
-- what 0005 did: nothing until the rollups are built (zone NULL), and for an UPDATE only the
-- rows whose reviewed columns changed (the old version taken away, the new one added).

CREATE FUNCTION review_fold_tickets(plus tickets[], minus tickets[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    zone text;
BEGIN
    SELECT s.zone INTO zone FROM review_state s;
    IF zone IS NULL OR (cardinality(plus) = 0 AND cardinality(minus) = 0) THEN
        RETURN;
    END IF;
    WITH changes AS (
        SELECT 1 AS sign, p.* FROM unnest(plus) AS p
        UNION ALL
        SELECT -1, m.* FROM unnest(minus) AS m),
    keyed AS (
        SELECT c.sign, (c.opened_at AT TIME ZONE zone)::date AS day,
               coalesce(c.agency, '') AS agency, c.category, c.first_response_at,
               c.resolved_at, c.response_working_s, c.resolution_working_s, c.sla_result
        FROM changes c),
    days AS (
        INSERT INTO review_ticket_days_delta
        SELECT k.day, k.agency, k.category, sum(k.sign),
               coalesce(sum(k.sign) FILTER (WHERE k.first_response_at IS NOT NULL), 0),
               coalesce(sum(k.sign) FILTER (WHERE k.resolved_at IS NOT NULL), 0),
               coalesce(sum(k.sign) FILTER (WHERE k.sla_result = 'early'), 0),
               coalesce(sum(k.sign) FILTER (WHERE k.sla_result = 'on_time'), 0),
               coalesce(sum(k.sign) FILTER (WHERE k.sla_result = 'late'), 0)
        FROM keyed k GROUP BY 1, 2, 3)
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
    HAVING sum(k.sign) <> 0;
END
$$;

CREATE OR REPLACE FUNCTION review_ticket_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    plus tickets[];
    minus tickets[];
BEGIN
    IF NOT EXISTS (SELECT FROM review_state s WHERE s.zone IS NOT NULL) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'INSERT' THEN
        SELECT array_agg(n) INTO plus FROM review_new n;
    ELSIF TG_OP = 'DELETE' THEN
        SELECT array_agg(o) INTO minus FROM review_old o;
    ELSE
        -- Only what the review reads; the SLA engine's bookkeeping updates add nothing.
        SELECT array_agg(o), array_agg(n) INTO minus, plus
        FROM review_old o JOIN review_new n USING (id)
        WHERE (o.opened_at, o.agency, o.category, o.first_response_at, o.resolved_at,
               o.response_working_s, o.resolution_working_s, o.sla_result)
              IS DISTINCT FROM
              (n.opened_at, n.agency, n.category, n.first_response_at, n.resolved_at,
               n.response_working_s, n.resolution_working_s, n.sla_result);
    END IF;
    PERFORM review_fold_tickets(coalesce(plus, '{}'), coalesce(minus, '{}'));
    RETURN NULL;
END
$$;
