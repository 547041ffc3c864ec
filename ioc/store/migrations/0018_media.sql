-- Photos of field reports. The image and its preview live in the media store (named by their
-- SHA-256); a row is one upload. It is linked to its report in the transaction that stores the
-- report, so a refused report links nothing; an upload never linked is an orphan (`ioc media
-- prune`).
CREATE TABLE media (
    id             uuid PRIMARY KEY,
    sha256         text NOT NULL,
    content_type   text NOT NULL CHECK (content_type IN ('image/jpeg', 'image/png', 'image/webp')),
    bytes          integer NOT NULL CHECK (bytes > 0),
    width          integer NOT NULL CHECK (width > 0),
    height         integer NOT NULL CHECK (height > 0),
    preview_sha256 text NOT NULL,
    lon            double precision CHECK (lon BETWEEN -180 AND 180),  -- the photo's EXIF GPS
    lat            double precision CHECK (lat BETWEEN -90 AND 90),
    source         text,  -- the uploading source key's source: only its reports may claim it
    uploaded_by    text NOT NULL,
    uploaded_at    timestamptz NOT NULL,
    report_id      bigint REFERENCES field_reports (id),
    position       smallint
);
CREATE INDEX media_report ON media (report_id, position) WHERE report_id IS NOT NULL;
CREATE INDEX media_orphans ON media (uploaded_at) WHERE report_id IS NULL;
CREATE INDEX media_files ON media (sha256);
CREATE INDEX media_previews ON media (preview_sha256);

-- Link uploads to the stored reports that name them (source, external_id, media id, position).
-- An id that is unknown, already linked, or another source's upload refuses the report: the
-- error is an integrity violation naming the column, so the ingest path refuses only that event.
CREATE FUNCTION ioc_link_media(sources text[], external_ids text[], ids uuid[], positions int[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    missing uuid;
BEGIN
    WITH wanted AS (
        SELECT * FROM unnest(sources, external_ids, ids, positions) AS w(src, ext, mid, pos)
    ), linked AS (
        UPDATE media m SET report_id = f.id, position = w.pos
        FROM wanted w JOIN field_reports f ON f.source = w.src AND f.external_id = w.ext
        WHERE m.id = w.mid AND m.report_id IS NULL AND (m.source IS NULL OR m.source = w.src)
        RETURNING m.id
    )
    SELECT w.mid INTO missing FROM wanted w WHERE w.mid NOT IN (SELECT id FROM linked) LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'media % is not an unlinked upload of this source', missing
            USING ERRCODE = 'foreign_key_violation', COLUMN = 'media_ids';
    END IF;
END
$$;
