-- A cheaper alert insert for the SLA engine's catch-up after an outage (thousands of alerts in
-- one statement, each with its share of the batch notices).
--
-- Two indexes of alerts that no query reads go: alerts_raised (raised_at, id), since the lists
-- page by id and the wall orders active alerts by severity first; alerts_active (agency,
-- raised_at), since the agency filter is "agency = … OR escalated_to = …" and active alerts
-- are found through the other partial index on resolved_at IS NULL (alerts_one_active). Each
-- was an entry to write for every alert raised, resolved or acknowledged.
DROP INDEX IF EXISTS alerts_raised;
DROP INDEX IF EXISTS alerts_active;

-- ioc_announce as in 0021, but the leading white space is trimmed only when there is some: a
-- JSON object starts with its brace, and ltrim of multibyte text first measures every
-- character of the payload (batch notices are several kilobytes).
CREATE OR REPLACE FUNCTION ioc_announce(channel text, payload text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO live_log (channel, payload, xact, ord)
    SELECT channel,
           CASE WHEN payload LIKE '{%' THEN payload ELSE ltrim(payload, E' \t\n\r') END,
           txid_current(),
           set_config('ioc.live_count',
                      (coalesce(nullif(current_setting('ioc.live_count', true), ''), '0')::int
                       + 1)::text,
                      true)::int
    WHERE coalesce(current_setting('ioc.live_notices', true), '') <> 'off';
$$;
