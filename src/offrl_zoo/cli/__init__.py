"""The ``offrl-zoo`` command line: ``main`` builds the parser (main.py) from the sub-command modules."""

from offrl_zoo.cli.main import main

__all__ = ["main"]
