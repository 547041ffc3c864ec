-- Cheaper live notices for the SLA engine's catch-up (thousands of alerts a tick, a few hundred
-- batch notices of some 6,000 bytes each).
--
-- ioc_live_text as in 0021 and 0028, with the same text, but without walking the payload: its
-- substr(payload, 2) counted every character of the multibyte text (about 60 µs a batch
-- notice, paid at every commit that sends it and at every replay), where right(payload, -1)
-- steps over the first character only; and the regular expression for an empty object (which
-- first widens the whole payload to wide characters) runs only when the payload does not start
-- with '{"', a start no empty object has.
CREATE OR REPLACE FUNCTION ioc_live_text(seq bigint, payload text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{"seq":' || seq
           || CASE WHEN left(payload, 2) <> '{"' AND payload ~ '^\{\s*\}' THEN '}'
                   ELSE ',' || right(payload, -1) END;
$$;

CREATE OR REPLACE FUNCTION ioc_live_text(seq bigint, payload text, items integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN items = 1 THEN ioc_live_text(seq, payload)
                ELSE '{"seq":' || seq || ',"items":' || items
                     || CASE WHEN left(payload, 2) <> '{"' AND payload ~ '^\{\s*\}' THEN '}'
                             ELSE ',' || right(payload, -1) END
           END;
$$;

-- ioc_announce (migration 0025) for each of ``payloads`` in order, in one INSERT: one notice of
-- one item each, numbered as that many calls of ioc_announce would number them. A function
-- call per notice ran its INSERT's executor each time (about 40 µs a notice).
CREATE FUNCTION ioc_announce_each(channel text, payloads text[]) RETURNS void
LANGUAGE sql AS $$
    WITH counted AS (  -- the transaction's count before these, advanced past them once
        SELECT set_config('ioc.live_count',
                          (coalesce(nullif(current_setting('ioc.live_count', true), ''), '0')::int
                           + cardinality(payloads))::text,
                          true)::int - cardinality(payloads) AS before
        WHERE cardinality(payloads) > 0
          AND coalesce(current_setting('ioc.live_notices', true), '') <> 'off')
    INSERT INTO live_log (channel, payload, xact, ord)
    SELECT channel,
           CASE WHEN p.payload LIKE '{%' THEN p.payload ELSE ltrim(p.payload, E' \t\n\r') END,
           txid_current(), c.before + p.n::int
    FROM counted c, unnest(payloads) WITH ORDINALITY AS p(payload, n);
$$;
