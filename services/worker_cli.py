"""``avid worker``: the command line around ``services.worker`` (registered by
``services.cli.register``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from avid_model.checkpoint import CheckpointError, read_metadata
from avid_model.cli import CommandError, positive_int
from services.celery_app import redis_url
from services.settings import Settings, StartupError, get_settings

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a Celery worker that embeds media for `avid serve` (distributed mode)",
        description=(
            "Run a Celery worker that embeds the files `avid serve` hands it when "
            "AVID_BROKER_URL is set. It must see the API's data directory (shared storage: "
            "files travel as paths, never through Redis) and load the API's checkpoint; the "
            "model is loaded on the first task. Tasks of a worker share one model and batch "
            "their windows together. Options override the AVID_* settings."
        ),
    )
    p.add_argument("--broker-url", help="the Redis broker, redis://host:6379/0 (AVID_BROKER_URL)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint directory (AVID_CHECKPOINT)")
    p.add_argument(
        "--data-dir", type=Path, help="the data directory shared with the API (AVID_DATA_DIR)"
    )
    p.add_argument(
        "--concurrency",
        type=positive_int,
        dest="worker_concurrency",
        metavar="N",
        help="tasks run at once, threads sharing one model (AVID_WORKER_CONCURRENCY, default 2)",
    )
    p.add_argument(
        "--pool",
        choices=("threads", "solo"),
        default="threads",
        help="threads (default) or solo (one task at a time)",
    )
    p.add_argument(
        "--loglevel",
        "--log-level",
        dest="loglevel",
        choices=LOG_LEVELS,
        default="info",
        metavar="LEVEL",
        help=f"{', '.join(LOG_LEVELS)} (default info)",
    )
    p.set_defaults(func=cmd_worker)


def worker_settings(args: argparse.Namespace) -> Settings:
    """The environment's settings with the options applied; checked before Celery starts."""
    overrides: dict[str, Any] = {
        name: value
        for name in ("broker_url", "checkpoint", "data_dir", "worker_concurrency")
        if (value := getattr(args, name, None)) is not None
    }
    try:
        settings = Settings.model_validate({**get_settings().model_dump(), **overrides})
    except ValidationError as exc:
        raise CommandError(f"invalid setting: {exc}") from exc
    if settings.broker_url is None:
        raise CommandError("no broker: set AVID_BROKER_URL or pass --broker-url redis://...")
    try:
        redis_url(settings.broker_url, "the broker URL")
        read_metadata(settings.checkpoint_path())  # a bad checkpoint fails now, not per task
    except (StartupError, CheckpointError) as exc:
        raise CommandError(str(exc)) from exc
    return settings


def cmd_worker(args: argparse.Namespace) -> int:
    from services.worker import run_worker

    settings = worker_settings(args)
    return run_worker(settings, pool=args.pool, loglevel=args.loglevel)
