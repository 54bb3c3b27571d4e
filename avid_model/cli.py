"""The `avid` command line: one entry point, subcommands contributed by each package.

avid_model registers its own commands here. Other packages (training, services) add theirs
through the ``avid.commands`` entry-point group declared in pyproject.toml, each pointing at a
``register(subparsers)`` function, so the model library never imports them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import entry_points

from avid_model.command_args import CommandError
from avid_model.errors import MediaError

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _os_error_text(exc: OSError) -> str:
    """``path: reason`` for errors raised by ``open`` & co.; the message for the others."""
    if exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avid", description="AVID audio-visual embeddings: model, training and service."
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from avid_model import commands

    commands.register(subparsers)
    for entry in sorted(entry_points(group="avid.commands"), key=lambda e: e.name):
        register: Register = entry.load()
        register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (CommandError, MediaError) as exc:
        print(f"avid {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"avid {args.command}: error: {_os_error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
