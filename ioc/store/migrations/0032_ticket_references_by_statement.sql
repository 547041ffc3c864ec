-- Two references of the ingest path checked once a statement instead of once a row.
--
-- A foreign key is checked row by row: a query of the referenced table and a lock on the row
-- found (itself logged). On the ingest path that was two of the checks every field report
-- paid, about a tenth of the database's work for it: a new ticket's opening report
-- (tickets.report_id) and a ticket event's ticket (ticket_events.ticket_id). Both are checked
-- now by a trigger at the end of each statement, with one query over the rows it wrote; the
-- error is the foreign key's (SQLSTATE 23503, the same constraint name and wording). Deleting
-- a referenced row, or changing its id, is refused the same way. Unlike a foreign key these
-- checks take no lock on the referenced rows: neither tickets nor field reports are ever
-- deleted by the platform, and a delete racing an insert that refers to the row could leave
-- the reference dangling.

ALTER TABLE tickets DROP CONSTRAINT tickets_report_id_fkey;
ALTER TABLE ticket_events DROP CONSTRAINT ticket_events_ticket_id_fkey;

-- Raises the foreign key's own error for a missing key (given as text).
CREATE FUNCTION ioc_reference_missing(child text, child_column text, constraint_name text,
                                      parent text, key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'insert or update on table "%" violates foreign key constraint "%"',
                    child, constraint_name
        USING ERRCODE = 'foreign_key_violation', TABLE = child, COLUMN = child_column,
              CONSTRAINT = constraint_name,
              DETAIL = format('Key (%s)=(%s) is not present in table "%s".', child_column, key,
                              parent);
END
$$;

-- Raises the foreign key's own error for a referenced row deleted or given another id.
CREATE FUNCTION ioc_reference_kept(child text, constraint_name text, parent text,
                                   parent_column text, key text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'update or delete on table "%" violates foreign key constraint "%" on table "%"',
                    parent, constraint_name, child
        USING ERRCODE = 'foreign_key_violation', TABLE = parent, CONSTRAINT = constraint_name,
              DETAIL = format('Key (%s)=(%s) is still referenced from table "%s".', parent_column,
                              key, child);
END
$$;

-- tickets.report_id → field_reports.id
CREATE FUNCTION tickets_report_written() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT n.report_id INTO missing FROM tickets_written n
    WHERE NOT EXISTS (SELECT FROM field_reports f WHERE f.id = n.report_id) LIMIT 1;
    IF FOUND THEN
        PERFORM ioc_reference_missing('tickets', 'report_id', 'tickets_report_id_fkey',
                                      'field_reports', missing::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_report_inserted AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS tickets_written
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_report_written();

CREATE FUNCTION tickets_report_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM field_reports f WHERE f.id = NEW.report_id) THEN
        PERFORM ioc_reference_missing('tickets', 'report_id', 'tickets_report_id_fkey',
                                      'field_reports', NEW.report_id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_report_updated AFTER UPDATE OF report_id ON tickets
    FOR EACH ROW WHEN (OLD.report_id IS DISTINCT FROM NEW.report_id)
    EXECUTE FUNCTION tickets_report_changed();

CREATE FUNCTION field_reports_ticket_kept() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept bigint;
BEGIN
    SELECT o.id INTO kept FROM field_reports_gone o
    WHERE EXISTS (SELECT FROM tickets t WHERE t.report_id = o.id) LIMIT 1;
    IF FOUND THEN
        PERFORM ioc_reference_kept('tickets', 'tickets_report_id_fkey', 'field_reports', 'id',
                                   kept::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER field_reports_deleted_kept AFTER DELETE ON field_reports
    REFERENCING OLD TABLE AS field_reports_gone
    FOR EACH STATEMENT EXECUTE FUNCTION field_reports_ticket_kept();

-- ticket_events.ticket_id → tickets.id
CREATE FUNCTION ticket_events_ticket_written() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing bigint;
BEGIN
    SELECT n.ticket_id INTO missing FROM ticket_events_written n
    WHERE NOT EXISTS (SELECT FROM tickets t WHERE t.id = n.ticket_id) LIMIT 1;
    IF FOUND THEN
        PERFORM ioc_reference_missing('ticket_events', 'ticket_id',
                                      'ticket_events_ticket_id_fkey', 'tickets', missing::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ticket_events_ticket_inserted AFTER INSERT ON ticket_events
    REFERENCING NEW TABLE AS ticket_events_written
    FOR EACH STATEMENT EXECUTE FUNCTION ticket_events_ticket_written();

CREATE FUNCTION ticket_events_ticket_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM tickets t WHERE t.id = NEW.ticket_id) THEN
        PERFORM ioc_reference_missing('ticket_events', 'ticket_id',
                                      'ticket_events_ticket_id_fkey', 'tickets', NEW.ticket_id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER ticket_events_ticket_updated AFTER UPDATE OF ticket_id ON ticket_events
    FOR EACH ROW WHEN (OLD.ticket_id IS DISTINCT FROM NEW.ticket_id)
    EXECUTE FUNCTION ticket_events_ticket_changed();

CREATE FUNCTION tickets_events_kept() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.id = NEW.id THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT FROM ticket_events e WHERE e.ticket_id = OLD.id) THEN
        PERFORM ioc_reference_kept('ticket_events', 'ticket_events_ticket_id_fkey', 'tickets',
                                   'id', OLD.id::text);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_events_kept AFTER DELETE OR UPDATE OF id ON tickets
    FOR EACH ROW EXECUTE FUNCTION tickets_events_kept();
