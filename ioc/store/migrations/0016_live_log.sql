-- The live log: every live notice, numbered in commit order, kept for a while so a client that
-- reconnects (to this or another server process) catches up from the last number it saw.
--
-- Writers call ioc_announce(channel, payload) where they used pg_notify. It only appends the
-- notice; a deferred constraint trigger numbers it when the transaction commits, under a
-- transaction-level advisory lock, and sends the NOTIFY with the number ("seq") added. The
-- lock is taken at commit, after every row lock of the transaction, so it cannot deadlock with
-- them, and it is held to the end of the commit: numbers are handed out in commit order, which
-- is also the order in which every listener hears the notices (PostgreSQL already serialises
-- the commits of notifying transactions). So "everything after seq N" is a complete answer.

CREATE SEQUENCE live_seq;

CREATE TABLE live_log (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq     bigint UNIQUE,                -- set at commit
    channel text NOT NULL,
    payload text NOT NULL,                -- the JSON notice as sent (with its seq, once set)
    at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX live_log_at ON live_log (at);

-- ALTER DATABASE … SET ioc.live_notices = off turns the notices off for new sessions (no live
-- feeds; `ioc bench multi` uses it to measure what they cost).
CREATE FUNCTION ioc_announce(channel text, payload text) RETURNS void
LANGUAGE sql AS $$
    INSERT INTO live_log (channel, payload)
    SELECT channel, payload
    WHERE coalesce(current_setting('ioc.live_notices', true), '') <> 'off';
$$;

CREATE FUNCTION live_log_number() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
    sent text;
BEGIN
    -- 0x10C_3000: the live log's numbering lock (ioc/store/livelog.py names it too).
    PERFORM pg_advisory_xact_lock(17575936);
    n := nextval('live_seq');
    sent := (NEW.payload::jsonb || jsonb_build_object('seq', n))::text;
    UPDATE live_log SET seq = n, payload = sent WHERE id = NEW.id;
    PERFORM pg_notify(NEW.channel, sent);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER live_log_number AFTER INSERT ON live_log
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION live_log_number();
