"""Source adapters: parse each source's format into events and deliver them to the platform."""
