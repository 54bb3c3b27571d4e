"""``avid serve``: run the embedding service with uvicorn (``avid worker``: ``worker_cli``).

Registered in the ``avid.commands`` entry-point group as ``services.cli:register``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from avid_model.cli import CommandError
from services import reindex_cli, worker_cli
from services.settings import Settings, StartupError, get_settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP embedding and search service",
        description="Run the embedding service. Options override the AVID_* settings.",
    )
    add_server_options(p, log_level="info")
    p.set_defaults(func=cmd_serve)
    reindex_cli.register(subparsers)
    worker_cli.register(subparsers)


def add_server_options(p: argparse.ArgumentParser, *, log_level: str) -> None:
    """The options of a command that runs the HTTP service (read by ``settings_from_args``)."""
    p.add_argument("--host", help="interface to listen on (AVID_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (AVID_PORT, default 8000)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint directory (AVID_CHECKPOINT)")
    p.add_argument("--data-dir", type=Path, help="index and media directory (AVID_DATA_DIR)")
    p.add_argument(
        "--log-level", default=log_level, help=f"uvicorn log level (default {log_level})"
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The environment's settings with the command-line options applied (and checked)."""
    overrides: dict[str, Any] = {
        name: value
        for name in ("host", "port", "checkpoint", "data_dir")
        if (value := getattr(args, name, None)) is not None
    }
    try:
        base = get_settings()
        settings = Settings.model_validate({**base.model_dump(), **overrides})
        settings.checkpoint_path()  # fail now, with a clear message, not inside uvicorn
    except ValidationError as exc:
        raise CommandError(f"invalid setting: {exc}") from exc
    except StartupError as exc:
        raise CommandError(str(exc)) from exc
    return settings


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from services.app import create_app

    settings = settings_from_args(args)
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=args.log_level
    )
    return 0
