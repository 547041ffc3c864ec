-- The wall's dossier layer and board.
--
-- An agency may have a place (its one-stop shop): dossiers that carry no location of their own
-- are shown there on the wall map. Both coordinates or neither, WGS 84 degrees.
ALTER TABLE agencies
    ADD COLUMN lon double precision CHECK (lon BETWEEN -180 AND 180),
    ADD COLUMN lat double precision CHECK (lat BETWEEN -90 AND 90),
    ADD CONSTRAINT agencies_place_whole CHECK ((lon IS NULL) = (lat IS NULL));

-- The board's "due soon" and "overdue" are ranges of the open, accepted dossiers by the time
-- they fall due soon (a dossier's due_soon_at is never after its deadline), so the board reads
-- only the dossiers already due soon or late, from the index alone, instead of every open one.
CREATE INDEX wall_dossiers_due ON dossiers (due_soon_at) INCLUDE (deadline_at, agency)
    WHERE state NOT IN ('result_returned', 'refused', 'withdrawn', 'stopped')
      AND accepted_at IS NOT NULL;
