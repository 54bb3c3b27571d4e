"""The service's ``avid`` commands, all registered here the same way: ``serve``, ``worker``,
``reindex``, ``migrate-index``, ``demo`` and ``client`` (its parsers live in
``services.client.commands``).

Registered in the ``avid.commands`` entry-point group as ``services.cli:register``. Each
command's parser is built here; its work is imported when it runs (so ``avid --help`` does
not import uvicorn, Celery or the model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TypeAlias, get_args

from avid_model.command_args import CommandError, positive_int
from services.client.commands import register_client
from services.index import IndexType
from services.settings import Settings, StartupError, settings_from_args

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

REINDEX_DESCRIPTION = (
    "Re-embed the kept media of every item stored by another model with NEW, keeping "
    "each item's id, kind and metadata, so that a service started with NEW serves "
    "them all. The old vectors stay in place until every file has been embedded, "
    "then each item is switched to the new ones and its old ones are dropped (copy "
    "the data directory first to be able to go back). Safe to re-run: files already "
    "embedded by NEW are not embedded again. Refuses to run while a service has the "
    "data directory open. Exit status: 0 when every item now has NEW's vectors, 1 "
    "when some were left with their old ones (missing or undecodable media; listed; "
    "with --dry-run: would be), 2 on an error."
)
MIGRATE_DESCRIPTION = (
    "Copy an embedded data directory (FAISS + SQLite) into the scale-out backends the "
    "settings name: its window vectors into Milvus at AVID_MILVUS_URI (default "
    "<data_dir>/index/milvus.db, Milvus Lite) and, when AVID_DATABASE_URL is set, its items "
    "into that PostgreSQL database; then check the counts on both sides and that a sample "
    "of stored vectors gives the same top item ids from FAISS and from Milvus. Safe to "
    "re-run: what was copied is skipped, so a stopped run resumes. The data directory is "
    "left as it was (the way back). Refuses to run while a service has it open. Options "
    "override the AVID_* settings. Exit status: 0 when copied and verified, 1 when the "
    "check failed or items conflicted with the target's (listed), 2 on an error."
)
DEMO_DESCRIPTION = """the README's main job, against the real HTTP service.

Starts the embedded service (the committed AV-Digits checkpoint unless ``--checkpoint``),
ingests the clips of one split of an AV-Digits manifest with ``POST /embed/video``, prints a
few cross-modal searches and the hit rates over every clip, then keeps serving until Ctrl-C
(``--exit`` stops instead). Hit rates: class level, a result showing the query's digit
(chance 0.1), with ``GET /search`` from each stored item (which leaves the item itself out);
instance level, the query's own clip found again from its uploaded file with ``POST /search``.
Re-running is idempotent: a clip already stored under its id is not embedded twice.
"""
WORKER_DESCRIPTION = (
    "Run a Celery worker that embeds the files `avid serve` hands it when "
    "AVID_BROKER_URL is set. It must see the API's data directory (shared storage: "
    "files travel as paths, never through Redis) and load the API's checkpoint; the "
    "model is loaded on the first task. Tasks of a worker share one model and batch "
    "their windows together. Options override the AVID_* settings."
)


def register(subparsers: Subparsers) -> None:
    """Add every command of the service to ``avid``."""
    _register_serve(subparsers)
    _register_worker(subparsers)
    _register_reindex(subparsers)
    _register_migrate_index(subparsers)
    _register_demo(subparsers)
    register_client(subparsers)


def add_server_options(p: argparse.ArgumentParser, *, log_level: str) -> None:
    """The options of a command that runs the HTTP service (read by ``settings_from_args``)."""
    p.add_argument("--host", help="interface to listen on (AVID_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (AVID_PORT, default 8000)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint directory (AVID_CHECKPOINT)")
    p.add_argument("--data-dir", type=Path, help="index and media directory (AVID_DATA_DIR)")
    p.add_argument(
        "--log-level", default=log_level, help=f"uvicorn log level (default {log_level})"
    )


# ----------------------------------------------------------------------------- avid serve


def _register_serve(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="run the HTTP embedding and search service",
        description="Run the embedding service. Options override the AVID_* settings. "
        "SIGTERM stops it within AVID_SHUTDOWN_GRACE_S (default 30 s), exit status 0: "
        "background jobs still running then stay queued and run at the next start.",
    )
    add_server_options(p, log_level="info")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    from services.api.app import create_app
    from services.api.server import run_server

    settings = settings_from_args(args)
    check_database_of(settings)
    run_server(create_app(settings), settings, log_level=args.log_level)
    return 0


def check_database_of(settings: Settings) -> None:
    """Reach and migrate ``AVID_DATABASE_URL``'s database now: a clear message, not a
    traceback from inside uvicorn's startup."""
    if settings.database_url is None:
        return
    from services.database.engine import DatabaseError, check_database

    try:
        check_database(settings.database_url)
    except DatabaseError as exc:
        raise CommandError(f"{exc} (check AVID_DATABASE_URL)") from exc


# ----------------------------------------------------------------------------- avid worker


def _register_worker(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "worker",
        help="run a Celery worker that embeds media for `avid serve` (distributed mode)",
        description=WORKER_DESCRIPTION,
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
    from avid_model.checkpoint import CheckpointError, read_metadata
    from services.worker.celery_app import redis_url

    names = ("broker_url", "checkpoint", "data_dir", "worker_concurrency")
    settings = settings_from_args(args, names, check_checkpoint=False)
    if settings.broker_url is None:
        raise CommandError("no broker: set AVID_BROKER_URL or pass --broker-url redis://...")
    try:
        redis_url(settings.broker_url, "the broker URL")
        read_metadata(settings.checkpoint_path())  # a bad checkpoint fails now, not per task
    except (StartupError, CheckpointError) as exc:
        raise CommandError(str(exc)) from exc
    return settings


def cmd_worker(args: argparse.Namespace) -> int:
    from services.worker.process import run_worker

    settings = worker_settings(args)
    return run_worker(settings, pool=args.pool, loglevel=args.loglevel)


# ----------------------------------------------------------------------------- avid reindex


def _register_reindex(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "reindex",
        help="re-embed every stored item's media with a new checkpoint",
        description=REINDEX_DESCRIPTION,
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        metavar="NEW",
        help="the new model's checkpoint directory",
    )
    p.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="index and media directory (AVID_DATA_DIR)"
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        dest="batch_max_clips",
        metavar="N",
        help="clips per forward pass (AVID_BATCH_MAX_CLIPS, default 32)",
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1, ... (AVID_DEVICE, default auto)")
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=2,
        metavar="N",
        help="files decoded at once (default 2)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="report what would be done; write nothing"
    )
    p.set_defaults(func=cmd_reindex)


def reindex_settings(args: argparse.Namespace) -> Settings:
    """The ``AVID_*`` settings (what a service would use: window hop, limits, precision...)
    with this command's options applied."""
    names = ("checkpoint", "data_dir", "batch_max_clips", "device")
    return settings_from_args(args, names)


def cmd_reindex(args: argparse.Namespace) -> int:
    from avid_model.checkpoint import CheckpointError
    from services.index import IndexStoreError
    from services.reindex.run import ReindexError, reindex

    settings = reindex_settings(args)
    check_database_of(settings)
    try:
        summary = reindex(
            settings, jobs=args.jobs, dry_run=args.dry_run, show_progress=sys.stderr.isatty()
        )
    except (ReindexError, CheckpointError, IndexStoreError) as exc:
        raise CommandError(str(exc)) from exc
    print("\n".join(summary.lines()))
    return 0 if summary.complete else 1


# ----------------------------------------------------------------------- avid migrate-index


def _register_migrate_index(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "migrate-index",
        help="copy an embedded data dir's vectors and items into Milvus (and PostgreSQL)",
        description=MIGRATE_DESCRIPTION,
    )
    p.add_argument(
        "--to", required=True, choices=("milvus",), help="the index backend to copy into"
    )
    p.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="the embedded data directory (AVID_DATA_DIR)"
    )
    p.add_argument(
        "--milvus-uri", metavar="URI", help="*.db file or http(s):// URL (AVID_MILVUS_URI)"
    )
    p.add_argument(
        "--database-url",
        metavar="URL",
        help="postgresql://... to copy the items into (AVID_DATABASE_URL; unset: they stay)",
    )
    p.add_argument(
        "--index-type",
        choices=get_args(IndexType),
        help="the Milvus index to build (AVID_INDEX_TYPE, default flat)",
    )
    p.add_argument(
        "--sample",
        type=positive_int,
        default=20,
        metavar="N",
        help="stored vectors searched both ways to verify (default 20)",
    )
    p.add_argument(
        "--batch",
        type=positive_int,
        default=500,
        metavar="N",
        help="items copied per transaction (default 500)",
    )
    p.set_defaults(func=cmd_migrate_index)


def cmd_migrate_index(args: argparse.Namespace) -> int:
    from services.migrate.run import MigrateError, migrate_index

    names = ("data_dir", "milvus_uri", "database_url", "index_type")
    settings = settings_from_args(args, names, check_checkpoint=False)
    progress = (lambda line: print(line, file=sys.stderr)) if sys.stderr.isatty() else None
    try:
        summary = migrate_index(
            settings, to=args.to, page_size=args.batch, sample=args.sample, progress=progress
        )
    except MigrateError as exc:
        raise CommandError(str(exc)) from exc
    print("\n".join(summary.lines()))
    return 0 if summary.verified else 1


# ----------------------------------------------------------------------------- avid demo


def _register_demo(subparsers: Subparsers) -> None:
    p = subparsers.add_parser(
        "demo",
        help="serve, ingest AV-Digits clips, print cross-modal searches (the README's main job)",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--clips", type=Path, required=True, help="an AV-Digits manifest.jsonl")
    p.add_argument("--split", default="test", help="split to ingest ('' for all; default test)")
    p.add_argument("--limit", type=int, default=0, help="ingest at most this many clips (0: all)")
    p.add_argument("--examples", type=int, default=3, help="searches to print in full")
    p.add_argument(
        "--instance-queries", type=int, default=30, help="clips searched by uploaded file"
    )
    p.add_argument("--exit", action="store_true", help="stop after the report (no serving)")
    add_server_options(p, log_level="warning")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from services.demo import run_demo

    if args.limit < 0 or args.examples < 0 or args.instance_queries < 0:
        raise CommandError("--limit, --examples and --instance-queries must not be negative")
    return run_demo(settings_from_args(args), args)
