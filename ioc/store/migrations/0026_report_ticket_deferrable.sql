-- Field reports can be stored already pointing at their tickets, written just after them in
-- the same transaction (ioc/tickets/filing.py): the reference is checked at commit when that
-- writer asks for it (SET CONSTRAINTS ... DEFERRED). Every other writer still has it checked
-- at once. This spares each report a second row version: storing it, then
-- UPDATE field_reports SET ticket_id once its ticket exists.
ALTER TABLE field_reports ALTER CONSTRAINT field_reports_ticket_id_fkey
    DEFERRABLE INITIALLY IMMEDIATE;
