-- The review's "overdue now" count (maps/review/queries.py _OVERDUE) reads the open tickets
-- opened in the period. Through tickets_open_cells it visited the heap page of every open
-- ticket (about 61,000 pages for 98,000 open tickets at 5 million); this index holds the
-- columns that count needs, so it reads only the index (an index-only scan).
CREATE INDEX tickets_open_review ON tickets (opened_at) INCLUDE (deadline_at, agency, category)
    WHERE state NOT IN ('resolved', 'closed', 'rejected');
