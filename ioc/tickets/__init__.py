"""Tickets: states, opening at intake, the SLA clock, agency queues and the actions people take."""
