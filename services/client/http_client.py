"""``AvidClient``: the service's HTTP API as typed Python calls.

    with AvidClient("http://127.0.0.1:8000", key="...") as avid:
        stored = avid.embed("clip.mp4")              # waits for a background job if one starts
        for hit in avid.search("bark.wav", target="video", k=5):
            print(hit.score, hit.file_name, hit.start)

Every error answer of the API is raised as ``ClientError`` (status, code, message); a
service that does not answer raises httpx's own ``httpx.TransportError``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import httpx

from avid_model.media_suffixes import AUDIO_SUFFIXES

Modality = Literal["video", "audio"]
DEFAULT_URL = "http://127.0.0.1:8000"


class ClientError(Exception):
    """An error answer of the service: ``{"error": {"code", "message"}}`` and its status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Item:
    id: str
    kind: Modality
    model_version: str
    content_hash: str
    duration: float
    metadata: dict[str, Any]
    created_at: float
    file_name: str | None = None
    size_bytes: int | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Item:
        return cls(
            id=body["id"],
            kind=body["kind"],
            model_version=body["model_version"],
            content_hash=body["content_hash"],
            duration=float(body["duration"]),
            metadata=dict(body["metadata"]),
            created_at=float(body["created_at"]),
            file_name=body.get("file_name"),
            size_bytes=body.get("size_bytes"),
        )


@dataclass(frozen=True)
class ItemPage:
    items: list[Item]
    total: int
    next_cursor: str | None


@dataclass(frozen=True)
class SearchHit:
    id: str
    kind: Modality
    score: float
    start: float
    end: float
    metadata: dict[str, Any]
    file_name: str | None = None
    size_bytes: int | None = None
    vector: list[float] | None = None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> SearchHit:
        return cls(
            id=body["id"],
            kind=body["kind"],
            score=float(body["score"]),
            start=float(body["start"]),
            end=float(body["end"]),
            metadata=dict(body["metadata"]),
            file_name=body.get("file_name"),
            size_bytes=body.get("size_bytes"),
            vector=body.get("vector"),
        )


@dataclass(frozen=True)
class EmbedOutcome:
    """An embedded upload: the stored item's id (None with ``store=False``) and the result
    body (vectors included); ``job_id`` when it ran as a background job."""

    id: str | None
    result: dict[str, Any] = field(repr=False)
    job_id: str | None = None


def kind_of(path: Path) -> Modality:
    """The endpoint for a file by its suffix: a sound file, else a video."""
    return "audio" if path.suffix.lower() in AUDIO_SUFFIXES else "video"


def _raise_for_error(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        error = response.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = f"http_{response.status_code}", response.text[:200] or "no body"
    raise ClientError(response.status_code, code, message)


class AvidClient:
    """A client of one service (``url``), with its API ``key`` when it has one."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        key: str | None = None,
        *,
        timeout: float = 300.0,
        job_poll_s: float = 0.5,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"X-API-Key": key} if key else {}
        self.url = url.rstrip("/")
        self.job_poll_s = job_poll_s
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport
        )

    def __enter__(self) -> AvidClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        _raise_for_error(response)
        return None if response.status_code == 204 else response.json()

    # -- the service ----------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        """Model version, item count and the key's access (``read`` or ``write``)."""
        body: dict[str, Any] = self._call("GET", "/info")
        return body

    def ready(self) -> bool:
        return self._http.get("/readyz").status_code == 200

    # -- items ----------------------------------------------------------------------------

    def embed(
        self,
        path: str | Path,
        kind: Modality | None = None,
        *,
        item_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        store: bool = True,
        wait: bool = True,
    ) -> EmbedOutcome:
        """Upload a file to ``/embed/{kind}`` (default: by its suffix). A long file is a
        background job: with ``wait`` its result is awaited, else only ``job_id`` is set."""
        path = Path(path)
        data: dict[str, str] = {"store": str(store).lower()}
        if item_id is not None:
            data["id"] = item_id
        if metadata is not None:
            data["metadata"] = json.dumps(dict(metadata))
        with path.open("rb") as handle:
            response = self._http.post(
                f"/embed/{kind or kind_of(path)}", files={"file": (path.name, handle)}, data=data
            )
        _raise_for_error(response)
        body = response.json()
        if response.status_code != 202:
            return EmbedOutcome(body["id"], body)
        job_id = str(body["job_id"])
        if not wait:
            return EmbedOutcome(None, {}, job_id)
        result = self.wait_for_job(job_id)
        return EmbedOutcome(result["id"], result, job_id)

    def embed_batch(
        self,
        paths: Sequence[str | Path],
        *,
        ids: Sequence[str | None] | None = None,
        metadatas: Sequence[Mapping[str, Any] | None] | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Upload several files in one ``POST /embed/batch``, each with its own id and
        metadata (lists in the files' order; ``metadata`` for all, under each file's own).
        One entry per file, as the service answered it: ``status`` and ``result``, ``job``
        (a long file: ``wait_for_job``) or ``error``; the request's own refusal (lists that
        do not fit the files) raises ``ClientError``."""
        data: dict[str, str] = {}
        if ids is not None:
            data["ids"] = json.dumps(list(ids))
        if metadatas is not None:
            data["metadatas"] = json.dumps([None if m is None else dict(m) for m in metadatas])
        if metadata is not None:
            data["metadata"] = json.dumps(dict(metadata))
        with ExitStack() as files:
            parts = [
                ("files", (Path(p).name, files.enter_context(Path(p).open("rb")))) for p in paths
            ]
            response = self._http.post("/embed/batch", files=parts, data=data)
        _raise_for_error(response)
        entries: list[dict[str, Any]] = response.json()["results"]
        return entries

    def wait_for_job(self, job_id: str, timeout: float | None = None) -> dict[str, Any]:
        """The job's result once done; ``ClientError`` with the job's error if it failed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self._call("GET", f"/jobs/{job_id}")
            if job["state"] == "done":
                result: dict[str, Any] = job["result"]
                return result
            if job["state"] == "failed":
                raise ClientError(422, job["error"]["code"], job["error"]["message"])
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['state']} after {timeout} s")
            time.sleep(self.job_poll_s)

    def item(self, item_id: str) -> Item:
        return Item.of(self._call("GET", f"/items/{item_id}"))

    def items(
        self, limit: int = 50, *, cursor: str | None = None, kind: Modality | None = None
    ) -> ItemPage:
        params: dict[str, str | int] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if kind is not None:
            params["kind"] = kind
        body = self._call("GET", "/items", params=params)
        return ItemPage([Item.of(i) for i in body["items"]], body["total"], body["next_cursor"])

    def iter_items(self, kind: Modality | None = None, page_size: int = 500) -> Iterator[Item]:
        """Every stored item, oldest first (cursor pages)."""
        cursor: str | None = None
        while True:
            page = self.items(page_size, cursor=cursor, kind=kind)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def update_metadata(self, item_id: str, patch: Mapping[str, Any]) -> Item:
        """Merge ``patch`` into the item's metadata (``None`` removes a key)."""
        return Item.of(self._call("PATCH", f"/items/{item_id}", json={"metadata": dict(patch)}))

    def delete(self, item_id: str) -> None:
        self._call("DELETE", f"/items/{item_id}")

    def media_url(self, item_id: str) -> dict[str, Any]:
        """Signed URLs of the item's media and poster (``url``, ``poster_url``) that work
        without the key, for a player that cannot send headers, until ``expires_at``."""
        body: dict[str, Any] = self._call("GET", f"/items/{item_id}/media-url")
        return body

    def media(self, item_id: str) -> bytes:
        response = self._http.get(f"/items/{item_id}/media")
        _raise_for_error(response)
        return response.content

    # -- search ---------------------------------------------------------------------------

    def search(
        self,
        path: str | Path,
        target: Modality = "video",
        k: int = 10,
        *,
        query: Modality | None = None,
        filter: Mapping[str, Any] | None = None,
        score_threshold: float | None = None,
        item_kind: Modality | None = None,
        with_vectors: bool = False,
    ) -> list[SearchHit]:
        """Search ``target`` with a file (not stored): by default its sound finds videos
        (``target="video"``) and its pictures find sounds (``target="audio"``)."""
        path = Path(path)
        data: dict[str, str] = {"target": target, "k": str(k)}
        if query is not None:
            data["query"] = query
        if filter is not None:
            data["filter"] = json.dumps(dict(filter))
        if score_threshold is not None:
            data["score_threshold"] = str(score_threshold)
        if item_kind is not None:
            data["item_kind"] = item_kind
        if with_vectors:
            data["with_vectors"] = "true"
        with path.open("rb") as handle:
            body = self._call("POST", "/search", files={"file": (path.name, handle)}, data=data)
        return [SearchHit.of(hit) for hit in body["results"]]

    def search_vector(
        self,
        vector: list[float],
        target: Modality,
        k: int = 10,
        *,
        filter: Mapping[str, Any] | None = None,
        score_threshold: float | None = None,
        item_kind: Modality | None = None,
        with_vectors: bool = False,
    ) -> list[SearchHit]:
        body = {
            "vector": vector,
            "target": target,
            "k": k,
            "filter": None if filter is None else dict(filter),
            "score_threshold": score_threshold,
            "item_kind": item_kind,
            "with_vectors": with_vectors,
        }
        found = self._call("POST", "/search/vector", json=body)
        return [SearchHit.of(hit) for hit in found["results"]]
