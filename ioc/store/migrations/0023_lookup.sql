-- Public lookup (công khai): a citizen looks a field report up by its code, PA-<report id>-<secret>.
-- The id makes the code unique; the secret (32 random bits from gen_random_uuid, drawn by the
-- database as the report is stored) makes it unguessable, so knowing the code is the right to
-- see the report's progress. Existing reports get theirs now.
ALTER TABLE field_reports
    ADD COLUMN lookup_secret text NOT NULL
        DEFAULT upper(substr(md5(gen_random_uuid()::text), 1, 8));
