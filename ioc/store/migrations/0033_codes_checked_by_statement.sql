-- A field report's category and a ticket's agency checked once a statement (as migration 0032
-- does for a ticket's report and an event's ticket), with the foreign key's own error.
--
-- They were the last two foreign keys every field report of a batch paid for row by row, about
-- a tenth of the database's work for it. A category or an agency still cannot go (be deleted,
-- or change its code) while a report or a ticket names it. Where a foreign key locked the
-- referenced row, the one that removes a code takes a share lock on the referring table
-- first: it waits for the reports or tickets being written, then sees them; and the ones
-- written after it wait until it is done, then find the code gone and are refused.

ALTER TABLE field_reports DROP CONSTRAINT field_reports_category_fkey;
ALTER TABLE tickets DROP CONSTRAINT tickets_agency_fkey;

-- The errors are raised by 0032's ioc_reference_missing and ioc_reference_kept.

-- field_reports.category → categories.code
CREATE FUNCTION field_reports_category_written() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    SELECT n.category INTO missing FROM field_reports_written n
    WHERE NOT EXISTS (SELECT FROM categories c WHERE c.code = n.category) LIMIT 1;
    IF FOUND THEN
        PERFORM ioc_reference_missing('field_reports', 'category', 'field_reports_category_fkey',
                                      'categories', missing);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER field_reports_category_inserted AFTER INSERT ON field_reports
    REFERENCING NEW TABLE AS field_reports_written
    FOR EACH STATEMENT EXECUTE FUNCTION field_reports_category_written();

CREATE FUNCTION field_reports_category_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM categories c WHERE c.code = NEW.category) THEN
        PERFORM ioc_reference_missing('field_reports', 'category', 'field_reports_category_fkey',
                                      'categories', NEW.category);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER field_reports_category_updated AFTER UPDATE OF category ON field_reports
    FOR EACH ROW WHEN (OLD.category IS DISTINCT FROM NEW.category)
    EXECUTE FUNCTION field_reports_category_changed();

-- tickets.agency → agencies.code (NULL: the unrouted queue)
CREATE FUNCTION tickets_agency_written() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    missing text;
BEGIN
    SELECT n.agency INTO missing FROM tickets_agency_new n
    WHERE n.agency IS NOT NULL AND NOT EXISTS (SELECT FROM agencies a WHERE a.code = n.agency)
    LIMIT 1;
    IF FOUND THEN
        PERFORM ioc_reference_missing('tickets', 'agency', 'tickets_agency_fkey', 'agencies',
                                      missing);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_agency_inserted AFTER INSERT ON tickets
    REFERENCING NEW TABLE AS tickets_agency_new
    FOR EACH STATEMENT EXECUTE FUNCTION tickets_agency_written();

CREATE FUNCTION tickets_agency_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT FROM agencies a WHERE a.code = NEW.agency) THEN
        PERFORM ioc_reference_missing('tickets', 'agency', 'tickets_agency_fkey', 'agencies',
                                      NEW.agency);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER tickets_agency_updated AFTER UPDATE OF agency ON tickets
    FOR EACH ROW WHEN (NEW.agency IS NOT NULL AND OLD.agency IS DISTINCT FROM NEW.agency)
    EXECUTE FUNCTION tickets_agency_changed();

-- A code that goes (deleted, or changed) while still named.
CREATE FUNCTION categories_named_kept() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        LOCK TABLE field_reports IN SHARE MODE;
        SELECT o.code INTO kept FROM categories_before o
        WHERE EXISTS (SELECT FROM field_reports f WHERE f.category = o.code) LIMIT 1;
    ELSE
        SELECT o.code INTO kept FROM categories_before o
        WHERE NOT EXISTS (SELECT FROM categories_after n WHERE n.code = o.code) LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;  -- names and the like changed, no code went
        END IF;
        LOCK TABLE field_reports IN SHARE MODE;
        SELECT o.code INTO kept FROM categories_before o
        WHERE NOT EXISTS (SELECT FROM categories_after n WHERE n.code = o.code)
          AND EXISTS (SELECT FROM field_reports f WHERE f.category = o.code)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        PERFORM ioc_reference_kept('field_reports', 'field_reports_category_fkey', 'categories', 'code', kept);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER categories_deleted_kept AFTER DELETE ON categories
    REFERENCING OLD TABLE AS categories_before
    FOR EACH STATEMENT EXECUTE FUNCTION categories_named_kept();
CREATE TRIGGER categories_updated_kept AFTER UPDATE ON categories
    REFERENCING OLD TABLE AS categories_before NEW TABLE AS categories_after
    FOR EACH STATEMENT EXECUTE FUNCTION categories_named_kept();

CREATE FUNCTION agencies_named_kept() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    kept text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        LOCK TABLE tickets IN SHARE MODE;
        SELECT o.code INTO kept FROM agencies_before o
        WHERE EXISTS (SELECT FROM tickets t WHERE t.agency = o.code) LIMIT 1;
    ELSE
        SELECT o.code INTO kept FROM agencies_before o
        WHERE NOT EXISTS (SELECT FROM agencies_after n WHERE n.code = o.code) LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;  -- names and the like changed, no code went
        END IF;
        LOCK TABLE tickets IN SHARE MODE;
        SELECT o.code INTO kept FROM agencies_before o
        WHERE NOT EXISTS (SELECT FROM agencies_after n WHERE n.code = o.code)
          AND EXISTS (SELECT FROM tickets t WHERE t.agency = o.code)
        LIMIT 1;
    END IF;
    IF FOUND THEN
        PERFORM ioc_reference_kept('tickets', 'tickets_agency_fkey', 'agencies', 'code', kept);
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER agencies_deleted_kept AFTER DELETE ON agencies
    REFERENCING OLD TABLE AS agencies_before
    FOR EACH STATEMENT EXECUTE FUNCTION agencies_named_kept();
CREATE TRIGGER agencies_updated_kept AFTER UPDATE ON agencies
    REFERENCING OLD TABLE AS agencies_before NEW TABLE AS agencies_after
    FOR EACH STATEMENT EXECUTE FUNCTION agencies_named_kept();
