-- Leaders' review, exact percentiles: a small row of the review (an agency or category with at
-- most a few thousand tickets in the period) reads its tickets' office times directly, by
-- (agency, category) pair and opening time. The agency is keyed as the rollups key it ('' for
-- the unrouted queue).
CREATE INDEX tickets_review_pairs ON tickets ((coalesce(agency, '')), category, opened_at);
