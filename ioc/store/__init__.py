"""The store: PostgreSQL/TimescaleDB through psycopg 3 (the source of truth and the bus)."""
