-- The review's "overdue now" count (maps/review/queries.py _OVERDUE) reads the open tickets
-- opened in the period. It used to find them through tickets_open_cells and then visit the
-- heap page of each (about 61,000 pages for the 98,000 open tickets among 5 million). The
-- open tickets' index by category and opening time now also holds the deadline and agency,
-- so that count reads the index alone (an index-only scan, a few hundred pages), and writers
-- keep the same number of indexes on tickets as before.
DROP INDEX tickets_open_by_category;
CREATE INDEX tickets_open_by_category ON tickets (category, opened_at)
    INCLUDE (deadline_at, agency) WHERE state NOT IN ('resolved', 'closed', 'rejected');
