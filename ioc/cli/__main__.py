"""``python -m ioc.cli``: the same command line as ``ioc``."""

from ioc.cli.main import main

main()
