"""The data directory's media files: kept uploads (``media/<sha256><ext>``, for ``avid
reindex``), scratch copies (``tmp/``), and what a crash leaves behind.

``remove_orphans`` runs at start, once the previous run's jobs are resumed: it removes the
partial uploads (``.upload-*.part``) of requests cut off by a crash, the scratch files no
unfinished job needs, and kept media that no item and no unfinished job refers to (the files
of failed or lost jobs), and cached posters of content no item holds. ``remove_item_media``
removes an item's kept file, and its cached posters (``media/posters/<sha256>/``, written by
``services.item_media``), once no other item (another model version's, say) holds the same
content.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from avid_model.media_suffixes import MEDIA_SUFFIXES
from services.index import IndexStore

log = logging.getLogger(__name__)

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
PARTIAL_UPLOAD_GLOB = ".upload-*.part"
POSTER_DIR = "posters"


def poster_dir(media_dir: Path, content_hash: str) -> Path:
    """Where the posters of a content hash are cached (see ``services.item_media``)."""
    return media_dir / POSTER_DIR / content_hash


def remove_posters(media_dir: Path, content_hash: str) -> None:
    shutil.rmtree(poster_dir(media_dir, content_hash), ignore_errors=True)


def content_hash_of(path: Path) -> str | None:
    """The content hash a kept upload's name carries (``<sha256><ext>``), or None."""
    stem, ext = path.name[:64], path.name[64:]
    if _SHA256_HEX.fullmatch(stem) and (ext == "" or ext in MEDIA_SUFFIXES):
        return stem
    return None


def kept_media(media_dir: Path) -> dict[str, list[Path]]:
    """content hash -> its kept uploads in ``media_dir`` (one per client extension used)."""
    found: dict[str, list[Path]] = {}
    if not media_dir.is_dir():
        return found
    for path in sorted(media_dir.iterdir()):
        sha = content_hash_of(path)
        if sha is not None and path.is_file():
            found.setdefault(sha, []).append(path)
    return found


@dataclass(frozen=True)
class OrphanSweep:
    partial_uploads: int = 0
    scratch_files: int = 0
    kept_media: int = 0

    @property
    def total(self) -> int:
        return self.partial_uploads + self.scratch_files + self.kept_media


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        log.warning("could not remove %s", path, exc_info=True)
        return False
    return True


def remove_orphans(
    media_dir: Path,
    scratch_dir: Path,
    *,
    is_stored: Callable[[str], bool],
    in_use: Collection[Path],
) -> OrphanSweep:
    """Remove what no item and no unfinished job needs (see the module doc). ``is_stored``:
    whether an item (of any model version) holds a content hash; ``in_use``: the files of
    unfinished jobs."""
    keep = {Path(p).resolve() for p in in_use}
    partial = 0
    for directory in (media_dir, scratch_dir):
        if directory.is_dir():
            partial += sum(_unlink(p) for p in directory.glob(PARTIAL_UPLOAD_GLOB))
    scratch = 0
    if scratch_dir.is_dir():
        for path in scratch_dir.iterdir():
            if path.is_file() and path.resolve() not in keep and path.suffix != ".part":
                scratch += _unlink(path)
    kept = 0
    for sha, paths in kept_media(media_dir).items():
        if is_stored(sha):
            continue
        kept += sum(_unlink(p) for p in paths if p.resolve() not in keep)
    posters = media_dir / POSTER_DIR
    if posters.is_dir():
        for cached in posters.iterdir():
            if not is_stored(cached.name):
                remove_posters(media_dir, cached.name)
    sweep = OrphanSweep(partial, scratch, kept)
    if sweep.total:
        log.info(
            "removed %d partial uploads, %d scratch files, %d kept media of no item",
            partial,
            scratch,
            kept,
        )
    return sweep


def remove_item_media(media_dir: Path, content_hash: str, still_stored: bool) -> int:
    """Remove the kept uploads of ``content_hash`` unless ``still_stored`` (another item holds
    the same content); how many files went."""
    if still_stored:
        return 0
    remove_posters(media_dir, content_hash)
    removed = 0
    for path in media_dir.glob(f"{content_hash}*"):
        if content_hash_of(path) == content_hash:
            with contextlib.suppress(OSError):
                path.unlink()
                removed += 1
    return removed


def delete_item(store: IndexStore, media_dir: Path, item_id: str) -> bool:
    """Delete the item (vectors and record) and its kept media unless another item holds
    the same content; False when there is no such item."""
    record = store.get(item_id)
    if record is None or not store.delete(item_id):
        return False
    remove_item_media(media_dir, record.content_hash, store.holds_content(record.content_hash))
    return True
