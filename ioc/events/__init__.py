"""Events: their kinds, checking request bodies, and the ingest use case that stores them."""
