"""IOC event platform: the core (events, store, routing, live hub, app, CLI)."""

__version__ = "0.1.0"
