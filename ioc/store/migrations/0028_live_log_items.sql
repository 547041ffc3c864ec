-- Live notices that carry several items, each with a number of its own.
--
-- A batch of ticket messages announced as one notice (one row, one NOTIFY) used to carry one
-- number for all its tickets, so a client that resumed after receiving part of the batch was
-- skipped the rest. Now a notice may take several numbers: ioc_announce_items(channel,
-- payload, items) logs a notice of ``items`` items, and the transaction's running count
-- (ioc.live_count) advances by that many. The row's ord is the place of its first item, so
-- numbering at commit is unchanged: the transaction takes first_seq .. first_seq + count - 1,
-- a row's first item is first_seq + ord - 1 and its other items the numbers after it. The
-- NOTIFY (and the replayed text) carries the first number as "seq" and, when there is more
-- than one item, the item count as "items": the items are numbered seq, seq + 1, … in order.
-- ioc_announce(channel, payload) is unchanged: a notice of one item.

ALTER TABLE live_log ADD COLUMN items integer NOT NULL DEFAULT 1 CHECK (items >= 1);

-- The text of a notice whose first item is numbered seq: "seq" first, then "items" for more
-- than one, then the payload's members.
CREATE FUNCTION ioc_live_text(seq bigint, payload text, items integer) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN items = 1 THEN ioc_live_text(seq, payload)
                ELSE '{"seq":' || seq || ',"items":' || items
                     || CASE WHEN payload ~ '^\{\s*\}' THEN '}' ELSE ',' || substr(payload, 2) END
           END;
$$;

-- As ioc_announce (migration 0025), for a notice of ``items`` items (1 or more).
CREATE FUNCTION ioc_announce_items(channel text, payload text, items integer) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO live_log (channel, payload, xact, ord, items)
    SELECT channel,
           CASE WHEN payload LIKE '{%' THEN payload ELSE ltrim(payload, E' \t\n\r') END,
           txid_current(),
           set_config('ioc.live_count',
                      (coalesce(nullif(current_setting('ioc.live_count', true), ''), '0')::int
                       + items)::text,
                      true)::int - items + 1,
           items
    WHERE coalesce(current_setting('ioc.live_notices', true), '') <> 'off';
$$;

-- As in 0021, each row's NOTIFY numbered by its first item (a count of 1 is still the
-- transaction's only notice, of one item).
CREATE OR REPLACE FUNCTION live_log_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n integer := current_setting('ioc.live_count')::integer;
    first bigint;
BEGIN
    -- 0x10C_6000: the live log's numbering lock.
    PERFORM pg_advisory_xact_lock(17588224);
    first := nextval('live_seq');
    IF n = 1 THEN  -- the common case: the row at hand is the transaction's only notice
        INSERT INTO live_commits (last_seq, first_seq, xact) VALUES (first, first, NEW.xact);
        PERFORM pg_notify(NEW.channel, ioc_live_text(first, NEW.payload));
        RETURN NULL;
    END IF;
    PERFORM setval('live_seq', first + n - 1);
    INSERT INTO live_commits (last_seq, first_seq, xact) VALUES (first + n - 1, first, NEW.xact);
    PERFORM pg_notify(s.channel, ioc_live_text(first + s.ord - 1, s.payload, s.items))
    FROM (SELECT l.channel, l.ord, l.payload, l.items FROM live_log l
          WHERE l.xact = NEW.xact ORDER BY l.ord OFFSET 0) AS s;
    RETURN NULL;
END
$$;
