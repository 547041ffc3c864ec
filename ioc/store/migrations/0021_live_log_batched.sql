-- The live log, numbered once per transaction instead of once per notice (0016 numbered each
-- notice with its own trigger call, lock, nextval, jsonb rebuild and UPDATE; a tick raising
-- 5,000 alerts paid that 5,000 times).
--
-- Rows are now insert-only. ioc_announce appends a notice with the writing transaction (xact)
-- and its place in it (ord, 1, 2, …, kept in a transaction-local setting, which a rolled-back
-- savepoint rolls back with its rows). Only the first notice of a transaction queues the
-- deferred trigger; at commit it takes the numbering lock once, hands out one range of numbers
-- for all the transaction's notices, records the range in live_commits and sends the NOTIFYs.
-- A notice's number is first_seq + ord - 1; the text sent (and replayed) is the payload, a
-- JSON object, with "seq" spliced in front, so nothing is parsed or rebuilt.
--
-- The lock is still taken at commit, after every row lock of the transaction, and held to the
-- end of the commit: numbers are handed out in commit order, the order in which listeners hear
-- the notices. Its key moves to 0x10C_6000: 0016's key (0x10C_3000) is also the retention
-- policies' lock (ioc/store/policies.py).

DROP TRIGGER live_log_number ON live_log;
DROP FUNCTION live_log_number();

CREATE TABLE live_commits (
    last_seq  bigint PRIMARY KEY,
    first_seq bigint NOT NULL,
    xact      bigint NOT NULL,               -- the writing transaction (txid_current())
    at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_commits_at ON live_commits USING brin (at);

-- The notices already logged keep their numbers: each old transaction becomes a range (its
-- notices were numbered one after another under the lock, and updated by the transaction
-- itself, whose id their row version carries; those 32-bit ids are below any new txid).
ALTER TABLE live_log ADD COLUMN xact bigint, ADD COLUMN ord integer;
UPDATE live_log l
SET xact = o.xact, ord = o.seq - o.first + 1, payload = (l.payload::jsonb - 'seq')::text
FROM (SELECT id, xmin::text::bigint AS xact, seq,
             min(seq) OVER (PARTITION BY xmin::text::bigint) AS first
      FROM live_log WHERE seq IS NOT NULL) AS o
WHERE l.id = o.id;
DELETE FROM live_log WHERE seq IS NULL;
INSERT INTO live_commits (last_seq, first_seq, xact, at)
SELECT max(seq), min(seq), xact, min(at) FROM live_log GROUP BY xact;

DROP INDEX live_log_at;
ALTER TABLE live_log DROP COLUMN seq, DROP COLUMN id,
    ALTER COLUMN xact SET NOT NULL, ALTER COLUMN ord SET NOT NULL,
    ADD PRIMARY KEY (xact, ord);

-- Payloads stay in the row, uncompressed: a notice is read back once, at commit, to be sent,
-- and NOTIFY takes under 8,000 bytes anyway (a longer payload fails there, as it did).
ALTER TABLE live_log ALTER COLUMN payload SET STORAGE PLAIN;

-- The text of notice number seq: the payload (a JSON object; ioc_announce trims what comes
-- before its brace) with "seq" first.
CREATE FUNCTION ioc_live_text(seq bigint, payload text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{"seq":' || seq
           || CASE WHEN payload ~ '^\{\s*\}' THEN '}' ELSE ',' || substr(payload, 2) END;
$$;

-- ALTER DATABASE … SET ioc.live_notices = off still turns the notices off for new sessions.
CREATE OR REPLACE FUNCTION ioc_announce(channel text, payload text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO live_log (channel, payload, xact, ord)
    SELECT channel, ltrim(payload, E' \t\n\r'), txid_current(),
           set_config('ioc.live_count',
                      (coalesce(nullif(current_setting('ioc.live_count', true), ''), '0')::int
                       + 1)::text,
                      true)::int
    WHERE coalesce(current_setting('ioc.live_notices', true), '') <> 'off';
$$;

CREATE FUNCTION live_log_number() RETURNS trigger
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
    PERFORM pg_notify(s.channel, ioc_live_text(first + s.ord - 1, s.payload))
    FROM (SELECT l.channel, l.ord, l.payload FROM live_log l
          WHERE l.xact = NEW.xact ORDER BY l.ord OFFSET 0) AS s;
    RETURN NULL;
END
$$;

-- Queued by a transaction's first notice only.
CREATE CONSTRAINT TRIGGER live_log_number AFTER INSERT ON live_log
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.ord = 1)
    EXECUTE FUNCTION live_log_number();
