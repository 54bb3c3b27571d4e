"""``avid reindex``: the command line around ``services.reindex`` (registered by
``services.cli.register``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from avid_model.checkpoint import CheckpointError
from avid_model.cli import CommandError, positive_int
from services.index import IndexStoreError
from services.settings import Settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "reindex",
        help="re-embed every stored item's media with a new checkpoint",
        description=(
            "Re-embed the kept media of every item stored by another model with NEW, keeping "
            "each item's id, kind and metadata, so that a service started with NEW serves "
            "them all. The old vectors stay in place until every file has been embedded, "
            "then each item is switched to the new ones and its old ones are dropped (copy "
            "the data directory first to be able to go back). Safe to re-run: files already "
            "embedded by NEW are not embedded again. Refuses to run while a service has the "
            "data directory open. Exit status: 0 when every item now has NEW's vectors, 1 "
            "when some were left with their old ones (missing or undecodable media; listed; "
            "with --dry-run: would be), 2 on an error."
        ),
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
    from services.cli import settings_from_args

    settings = settings_from_args(args)
    extra = {
        name: value
        for name in ("batch_max_clips", "device")
        if (value := getattr(args, name, None)) is not None
    }
    try:
        return Settings.model_validate({**settings.model_dump(), **extra})
    except ValidationError as exc:
        raise CommandError(f"invalid setting: {exc}") from exc


def cmd_reindex(args: argparse.Namespace) -> int:
    from services.reindex import ReindexError, reindex

    settings = reindex_settings(args)
    try:
        summary = reindex(
            settings, jobs=args.jobs, dry_run=args.dry_run, show_progress=sys.stderr.isatty()
        )
    except (ReindexError, CheckpointError, IndexStoreError) as exc:
        raise CommandError(str(exc)) from exc
    print("\n".join(summary.lines()))
    return 0 if summary.complete else 1
