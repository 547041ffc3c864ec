-- The SLA engine's hot-path columns of a ticket, in a narrow table of their own. Moving a clock
-- on (the engine's one write per due ticket) changed an indexed column of tickets, so it could
-- never be a HOT update and wrote a new entry into each of the ticket indexes; here it writes
-- into this table's two. The rest of the clock (deadline, pauses, results) stays in tickets.
-- No foreign key to tickets: its check would cost each new ticket more (about 14 µs of backend
-- CPU a row in opening's COPY) than the whole clock row (5 µs). Tickets are never deleted, the
-- row is written only alongside its ticket, and the engine reads it joined to its ticket.
CREATE TABLE ticket_clocks (
    ticket_id     bigint PRIMARY KEY,
    sla_stage     text,         -- next alert level due: due_soon, overdue, escalated
    next_check_at timestamptz   -- when the SLA engine looks at it next; NULL: stopped or paused
);
INSERT INTO ticket_clocks (ticket_id, sla_stage, next_check_at)
SELECT id, sla_stage, next_check_at FROM tickets
WHERE sla_stage IS NOT NULL OR next_check_at IS NOT NULL;
-- The engine reads only what is due: an index probe, not a scan of the open tickets.
CREATE INDEX ticket_clocks_next_check ON ticket_clocks (next_check_at)
    WHERE next_check_at IS NOT NULL;
DROP INDEX tickets_next_check;
ALTER TABLE tickets DROP COLUMN sla_stage, DROP COLUMN next_check_at;
