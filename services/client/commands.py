"""``avid client ingest|search|items|delete|patch``: a running service, from the command line.

The parsers are built here and registered by ``services.cli``; the work imports httpx (and
tqdm) only when a command runs. ``--url`` defaults to ``$AVID_URL`` (else
http://127.0.0.1:8000), ``--key`` to ``$AVID_API_KEY``."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from avid_model.command_args import CommandError, positive_int
from avid_model.media_suffixes import MEDIA_SUFFIXES

if TYPE_CHECKING:
    from services.client.http_client import AvidClient, SearchHit

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
HASH_CHUNK = 1 << 20


def register_client(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "client",
        help="use a running service: ingest files, search, list, delete or patch items",
        description="Talk to a running `avid serve` over HTTP.",
    )
    commands = parser.add_subparsers(dest="client_command", required=True, metavar="COMMAND")

    ingest = commands.add_parser(
        "ingest",
        help="upload files or folders (recursive, by suffix); skips what is already stored",
        description="Upload media files (folders are searched recursively for the media "
        "suffixes) with a progress bar and a few uploads at once. Files whose content is "
        "already stored (same SHA-256) are skipped, so an interrupted ingest resumes. Exit "
        "status 0 when every file is stored, 1 when some failed (listed).",
    )
    _add_connection(ingest)
    ingest.add_argument("paths", nargs="+", type=Path, metavar="DIR_OR_FILE")
    ingest.add_argument(
        "--concurrency", type=positive_int, default=4, help="uploads at once (default 4)"
    )
    ingest.add_argument(
        "--kind",
        choices=("auto", "video", "audio"),
        default="auto",
        help="endpoint: auto picks /embed/audio for sound suffixes (.wav, .mp3, ...)",
    )
    ingest.add_argument("--metadata", help="a JSON object stored with every file")
    ingest.add_argument("--no-progress", action="store_true", help="no progress bar")
    ingest.set_defaults(func=cmd_ingest)

    search = commands.add_parser(
        "search",
        help="search with a file and print the results",
        description="Search with a file (not stored): by default its sound finds videos; "
        "--target audio finds sounds fitting its pictures.",
    )
    _add_connection(search)
    search.add_argument("file", type=Path)
    search.add_argument("--k", type=positive_int, default=10, help="results (default 10)")
    search.add_argument("--target", choices=("video", "audio"), default="video")
    search.add_argument(
        "--query", choices=("video", "audio"), help="the file's modality to search with"
    )
    search.add_argument("--filter", help='metadata filter, e.g. \'{"label": {"in": [1, 2]}}\'')
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.set_defaults(func=cmd_search)

    items = commands.add_parser("items", help="list the stored items")
    _add_connection(items)
    items.add_argument("--limit", type=positive_int, default=50, help="items a page (default 50)")
    items.add_argument("--kind", choices=("video", "audio"))
    pages = items.add_mutually_exclusive_group()
    pages.add_argument(
        "--cursor", help="start at this page (the cursor that the previous page printed)"
    )
    pages.add_argument(
        "--all", action="store_true", help="every item: page through with the API's cursor"
    )
    items.add_argument("--json", action="store_true", help="print the items as JSON lines")
    items.set_defaults(func=cmd_items)

    delete = commands.add_parser(
        "delete",
        help="delete stored items by id",
        description="Delete items (their vectors, and their kept media unless another item "
        "holds the same content). Exit status 0 when every id was deleted, 1 when some were "
        "not (listed with the service's answer, e.g. 404 not_found), 2 on an error.",
    )
    _add_connection(delete)
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.set_defaults(func=cmd_delete)

    patch = commands.add_parser(
        "patch",
        help="change a stored item's metadata",
        description="Merge changes into an item's metadata (a JSON merge patch: a null value "
        "removes the key) and print the metadata it then has. Exit status 2 when the service "
        "refuses (unknown id: 404; bad metadata: 422).",
    )
    _add_connection(patch)
    patch.add_argument("id", metavar="ID")
    patch.add_argument("--metadata", help='a JSON object to merge, e.g. \'{"label": "dog"}\'')
    patch.add_argument(
        "--set",
        action="append",
        default=[],
        dest="assignments",
        metavar="KEY=VALUE",
        help="set one key (repeatable); VALUE is read as JSON when it parses (3, true, null, "
        '"x"), else taken as a string',
    )
    patch.set_defaults(func=cmd_patch)


def _add_connection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        default=os.environ.get("AVID_URL", "http://127.0.0.1:8000"),
        help="the service (default $AVID_URL or http://127.0.0.1:8000)",
    )
    p.add_argument(
        "--key", default=os.environ.get("AVID_API_KEY") or None, help="API key ($AVID_API_KEY)"
    )


def _client(args: argparse.Namespace) -> AvidClient:
    from services.client.http_client import AvidClient

    return AvidClient(args.url, args.key)


def _json_object(raw: str | None, what: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise CommandError(f"--{what} is not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise CommandError(f"--{what} must be a JSON object")
    return value


def _reaching(run: Any, args: argparse.Namespace) -> int:
    """Run ``run(args)``, turning a service that does not answer or refuses into one line."""
    import httpx

    from services.client.http_client import ClientError

    try:
        result: int = run(args)
    except httpx.TransportError as exc:
        raise CommandError(f"cannot reach {args.url}: {exc}") from exc
    except ClientError as exc:
        raise CommandError(str(exc)) from exc
    return result


# ----------------------------------------------------------------------------- ingest


def media_files(paths: Iterable[Path]) -> list[Path]:
    """The files named, and the media files (by suffix) under the folders named, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES
            )
        elif path.is_file():
            found.append(path)
        else:
            raise CommandError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class IngestSummary:
    stored: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def ingest(
    client: AvidClient,
    files: list[Path],
    *,
    concurrency: int = 4,
    kind: str = "auto",
    metadata: dict[str, Any] | None = None,
    progress: bool = True,
) -> IngestSummary:
    """Upload ``files`` not already stored (by content hash), ``concurrency`` at a time."""
    from tqdm import tqdm

    from services.client.http_client import ClientError, kind_of

    stored_hashes = {item.content_hash for item in client.iter_items()}
    summary = IngestSummary()

    def upload(path: Path) -> tuple[Path, str]:
        if sha256_of(path) in stored_hashes:
            return path, "skipped"
        chosen = kind_of(path) if kind == "auto" else kind
        client.embed(path, "audio" if chosen == "audio" else "video", metadata=metadata)
        return path, "stored"

    with (
        ThreadPoolExecutor(max_workers=concurrency) as pool,
        tqdm(total=len(files), unit="file", disable=not progress, file=sys.stderr) as bar,
    ):
        futures = {pool.submit(upload, path): path for path in files}
        for future in as_completed(futures):
            path = futures[future]
            try:
                _, outcome = future.result()
            except ClientError as exc:
                summary.failed.append((path, str(exc)))
            else:
                (summary.stored if outcome == "stored" else summary.skipped).append(path)
            bar.update(1)
    return summary


def cmd_ingest(args: argparse.Namespace) -> int:
    metadata = _json_object(args.metadata, "metadata")
    files = media_files(args.paths)
    if not files:
        raise CommandError("no media files found")

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            summary = ingest(
                client,
                files,
                concurrency=args.concurrency,
                kind=args.kind,
                metadata=metadata,
                progress=not args.no_progress,
            )
        for path, message in sorted(summary.failed):
            print(f"failed: {path}: {message}")
        print(
            f"{len(files)} files: {len(summary.stored)} stored, {len(summary.skipped)} already "
            f"stored, {len(summary.failed)} failed"
        )
        return 1 if summary.failed else 0

    return _reaching(run, args)


# ----------------------------------------------------------------------------- search


def results_table(hits: list[SearchHit]) -> str:
    rows = [("#", "score", "window (s)", "kind", "name", "id")]
    for rank, hit in enumerate(hits, 1):
        window = f"{hit.start:.1f}-{hit.end:.1f}"
        name = hit.file_name or ""
        rows.append((str(rank), f"{hit.score:.3f}", window, hit.kind, name, hit.id))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def cmd_search(args: argparse.Namespace) -> int:
    flt = _json_object(args.filter, "filter")
    if not args.file.is_file():
        raise CommandError(f"{args.file}: no such file")

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            hits = client.search(args.file, args.target, args.k, query=args.query, filter=flt)
        if args.json:
            print(json.dumps({"results": [hit.__dict__ for hit in hits]}, indent=2))
        else:
            print(results_table(hits) if hits else "no results")
        return 0

    return _reaching(run, args)


# ----------------------------------------------------------------------------- items


def cmd_items(args: argparse.Namespace) -> int:
    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            if args.all:
                listed = list(client.iter_items(kind=args.kind, page_size=args.limit))
                total, next_cursor = len(listed), None
            else:
                page = client.items(args.limit, cursor=args.cursor, kind=args.kind)
                listed, total, next_cursor = page.items, page.total, page.next_cursor
        more = f"more: --cursor {next_cursor} (or --all)" if next_cursor else ""
        if args.json:
            for item in listed:
                print(json.dumps(item.__dict__))
            if more:
                print(more, file=sys.stderr)  # stdout stays JSON lines
            return 0
        rows = [("id", "kind", "duration", "name", "metadata")]
        for item in listed:
            meta = json.dumps(item.metadata)
            meta = meta if len(meta) <= 60 else meta[:57] + "..."
            rows.append((item.id, item.kind, f"{item.duration:.1f}", item.file_name or "", meta))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        for row in rows:
            print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        print(f"{len(listed)} of {total} items" + (f" ({more})" if more else ""))
        return 0

    return _reaching(run, args)


# ----------------------------------------------------------------------------- delete


def cmd_delete(args: argparse.Namespace) -> int:
    from services.client.http_client import ClientError

    def run(args: argparse.Namespace) -> int:
        failed = 0
        with _client(args) as client:
            for item_id in dict.fromkeys(args.ids):
                try:
                    client.delete(item_id)
                except ClientError as exc:
                    if exc.status not in range(400, 500) or exc.status in (401, 403):
                        raise  # the service or the key, not this id: stop (exit status 2)
                    print(f"failed: {item_id}: {exc}", file=sys.stderr)
                    failed += 1
                else:
                    print(f"deleted {item_id}")
        return 1 if failed else 0

    return _reaching(run, args)


# ----------------------------------------------------------------------------- patch


def metadata_patch(raw: str | None, assignments: list[str]) -> dict[str, Any]:
    """``--metadata`` merged with the ``--set KEY=VALUE`` options (which win)."""
    patch = _json_object(raw, "metadata") or {}
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key:
            raise CommandError(f"--set {assignment!r}: expected KEY=VALUE")
        try:
            patch[key] = json.loads(text)
        except ValueError:
            patch[key] = text
    if not patch:
        raise CommandError("nothing to change: give --metadata JSON or --set KEY=VALUE")
    return patch


def cmd_patch(args: argparse.Namespace) -> int:
    patch = metadata_patch(args.metadata, args.assignments)

    def run(args: argparse.Namespace) -> int:
        with _client(args) as client:
            item = client.update_metadata(args.id, patch)
        print(json.dumps({"id": item.id, "metadata": item.metadata}))
        return 0

    return _reaching(run, args)
