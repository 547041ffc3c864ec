"""The ``ioc`` command line: one module per command group."""
