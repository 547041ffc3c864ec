-- Public lookup (công khai): a citizen looks a field report up by its code, PA-<report id>-<secret>.
-- The id makes the code unique; the secret (32 random bits from gen_random_uuid, drawn by the
-- database as the report is stored) makes it unguessable, so knowing the code is the right to
-- see the report's progress. The column is added empty and its default set after, so the upgrade
-- does not rewrite a large field_reports table under an exclusive lock: reports stored before
-- it have no code (none was ever handed out for them) and are not found by lookup.
ALTER TABLE field_reports ADD COLUMN lookup_secret text;
ALTER TABLE field_reports
    ALTER COLUMN lookup_secret SET DEFAULT upper(substr(md5(gen_random_uuid()::text), 1, 8));
