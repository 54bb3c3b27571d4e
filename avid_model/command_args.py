"""What every ``avid`` subcommand shares: the user-facing ``CommandError`` and argparse types.

Its own module, so that ``avid_model.cli`` (the entry point, which loads every package's
commands) and the modules defining commands (``avid_model.commands``, ``training.cli``,
``services.cli``, ...) both import it without importing each other.
"""

from __future__ import annotations

import argparse


class CommandError(Exception):
    """A user-facing failure: printed as ``avid COMMAND: error: ...`` with exit status 2.

    ``avid_model.cli.main`` reports a ``MediaError`` and an ``OSError`` (a missing, unreadable
    or unwritable file) the same way: one line on stderr, no traceback."""


def positive_int(text: str) -> int:
    """An argparse ``type`` for counts: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value
