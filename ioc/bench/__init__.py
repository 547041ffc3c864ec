"""Benchmarks shipped with the platform (``ioc bench …``); each prints a baseline from the same run."""
