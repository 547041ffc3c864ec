"""Alert records, their queries and silences, and the webhook outbox (in ioc: ticket actions and the ingest write them)."""
