"""The store's vector indexes in Milvus, through pymilvus' ``MilvusClient``.

``AVID_MILVUS_URI`` is a local ``*.db`` file (Milvus Lite, embedded in this process by the
``milvus-lite`` package: what the tests run) or an ``http(s)://`` URL of a Milvus server or
cluster. One collection per (store, modality), ``avid_<store id>_<modality>``; each row is
one window: its SQLite row id as primary key, the vector, and as scalar fields the item id,
window number, times and the model version. Searches filter on the model version, so
embedding spaces never mix; the index type comes from the ``AVID_INDEX_TYPE`` vocabulary
(flat -> FLAT, hnsw -> HNSW with M/efConstruction/ef, ivf -> IVF_FLAT with nlist/nprobe).

SQLite stays the source of truth: on open the collection is reconciled with it (rows gone
from SQLite are deleted, rows missing from Milvus upserted), which also repairs a crash
between a SQLite commit and the Milvus write. Milvus persists its own data, so there are no
snapshots.

Several writers, one collection: replicas of the service that share one item database
(PostgreSQL) and one Milvus server write the same collections. So nothing here trusts a
count kept by this process: searches and ``live_count`` ask Milvus (collections are made
with Strong consistency, so a search sees every write acknowledged before it, whoever made
it); creating a collection tolerates a replica that made it first; and reconciling on open
leaves alone the rows newer than the item database it read. Milvus Lite is the exception:
one process holds its file (milvus-lite takes an exclusive ``flock`` on it; a second
process fails with "Open local milvus failed"), so replicas in several processes need a
Milvus server; several clients in one process share the one embedded server, which is how
the tests run two replicas on one Lite file.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from pymilvus import DataType, MilvusClient, MilvusException

from services.index.errors import IndexStoreError
from services.index.index_backend import IndexBackend, IndexBackendName
from services.index.index_persistence import Restored, SnapshotIdentity
from services.index.index_settings import IndexSpec
from services.index.item_checks import MAX_ID_LENGTH
from services.index.item_database import ItemDatabase
from services.index.milvus_uri import check_milvus_uri, is_milvus_url
from services.index.records import FloatArray, IdArray, Modality
from services.index.vector_index import EMPTY_IDS, ModalityIndex, empty_result

log = logging.getLogger(__name__)

# Milvus refuses a search with limit (topk) above this; the store asks for more windows only
# when one query's best windows hold fewer than k distinct items.
MAX_TOPK = 16_384
_BATCH = 5_000


def _index_params(spec: IndexSpec) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(Milvus index type, build params, search params) for ``spec``."""
    if spec.index_type == "hnsw":
        build = {"M": spec.hnsw.m, "efConstruction": spec.hnsw.ef_construction}
        return "HNSW", build, {"ef": spec.hnsw.ef_search}
    if spec.index_type == "ivf":
        return "IVF_FLAT", {"nlist": spec.ivf.nlist}, {"nprobe": spec.ivf.nprobe}
    return "FLAT", {}, {}


def _fingerprint(spec: IndexSpec, lite: bool) -> str:
    """The build settings as kept in store_meta. On Milvus Lite, HNSW / IVF collections made
    before their build params reached Lite (see ``_create``) carry no "lite_params" mark,
    so they are made anew, with the settings asked, on the next open."""
    fingerprint = spec.build_fingerprint()
    if lite and _index_params(spec)[1]:
        fingerprint["lite_params"] = True
    return json.dumps(fingerprint, sort_keys=True)


class MilvusIndex(ModalityIndex):
    """One modality's vectors of one model version in a Milvus collection."""

    def __init__(
        self, client: MilvusClient, collection: str, spec: IndexSpec, model_version: str
    ) -> None:
        super().__init__(spec)
        self.client = client
        self.collection = collection
        self.model_version = model_version
        # Milvus Lite does not take filter templates: the version as an escaped literal.
        self._filter = f"model_version == {json.dumps(model_version)}"
        self._high_id = 0  # the highest id written so far (paging in ``ids``)

    @property
    def mode(self) -> str:
        return self.spec.index_type

    @property
    def live_count(self) -> int:
        """This model version's rows in the collection, as Milvus counts them now (other
        replicas' writes included)."""
        rows = self.client.query(self.collection, filter=self._filter, output_fields=["count(*)"])
        return int(rows[0]["count(*)"]) if rows else 0

    def _add(self, ids: IdArray, vectors: FloatArray) -> None:
        self._write(ids, vectors, upsert=False)

    def _write(self, ids: IdArray, vectors: FloatArray, *, upsert: bool) -> None:
        write = self.client.upsert if upsert else self.client.insert
        for start in range(0, len(ids), _BATCH):
            rows = [
                {"id": int(i), "vector": v, "model_version": self.model_version}
                for i, v in zip(
                    ids[start : start + _BATCH], vectors[start : start + _BATCH], strict=True
                )
            ]
            write(self.collection, rows)
        if len(ids):
            self._high_id = max(self._high_id, int(ids.max()))

    def remove(self, ids: IdArray) -> None:
        if len(ids):
            for start in range(0, len(ids), _BATCH):
                chunk = [int(i) for i in ids[start : start + _BATCH]]
                self.client.delete(self.collection, ids=chunk)

    def _search(self, queries: FloatArray, k: int) -> tuple[FloatArray, IdArray]:
        # Capped at what Milvus takes, not at a count of this process's: another replica's
        # rows are as much part of the answer as this one's.
        k = min(k, MAX_TOPK)
        if k <= 0:
            return empty_result(queries.shape[0])
        # Read from the spec at each search: ef / nprobe may change without a rebuild.
        index_type, _, search_params = _index_params(self.spec)
        params: dict[str, Any] = {"metric_type": "IP", "params": search_params}
        if index_type == "HNSW":
            params["params"]["ef"] = max(params["params"]["ef"], k)
        found = self.client.search(
            self.collection,
            data=[q for q in np.asarray(queries, dtype=np.float32)],
            limit=k,
            filter=self._filter,
            search_params=params,
        )
        scores = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        ids = np.full((queries.shape[0], k), -1, dtype=np.int64)
        for row, hits in enumerate(found):
            for j, hit in enumerate(hits):
                scores[row, j] = hit["distance"]
                ids[row, j] = hit["id"]
        return scores, ids

    def ids(self, up_to: int | None = None) -> IdArray:
        """Every id of this model version in the collection. Paged by id range (``up_to``:
        the highest id expected; anything above it comes in one last query), as Milvus caps
        one query's window and Milvus Lite's query iterator lacks a server call."""
        if up_to is None:
            up_to = self._high_id
        found: list[int] = []
        lo = -1
        while True:
            hi = lo + MAX_TOPK
            top = f" and id <= {hi}" if hi < up_to else ""
            rows = self.client.query(
                self.collection, filter=f"{self._filter} and id > {lo}{top}", output_fields=["id"]
            )
            found += [int(r["id"]) for r in rows]
            if not top:
                break
            lo = hi
        return np.array(sorted(found), dtype=np.int64) if found else EMPTY_IDS.copy()

    def reconcile(self, db: ItemDatabase, modality: Modality) -> tuple[int, int]:
        """Bring the collection in line with ``db``: (rows upserted, rows deleted)."""
        max_row_id = db.max_row_id()
        self._high_id = max_row_id
        in_index = self.ids(up_to=max_row_id)
        in_db = db.row_ids_up_to(modality, self.model_version, max_row_id)
        if db.shared:
            # Rows above max_row_id were written after the database was read, by another
            # replica sharing it: not this reconcile's to judge, so not deleted here. (On
            # a database of this store's alone they are strays, e.g. from a restored
            # backup, and go.)
            in_index = in_index[in_index <= max_row_id]
        gone = np.setdiff1d(in_index, in_db)
        missing = np.setdiff1d(in_db, in_index)
        self.remove(gone)
        added = 0
        for start in range(0, len(missing), 50_000):
            ids, vectors = db.vectors_by_ids(missing[start : start + 50_000])
            self._write(ids, vectors, upsert=True)
            added += len(ids)
        return added, len(gone)

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "collection": self.collection}


class MilvusBackend(IndexBackend):
    """The store's indexes in Milvus at ``uri`` (see the module doc)."""

    name: IndexBackendName = "milvus"
    keeps_snapshots = False

    def __init__(self, uri: str) -> None:
        self.uri = check_milvus_uri(uri)
        self._client: MilvusClient | None = None

    @property
    def client(self) -> MilvusClient:
        """The connection, made on first use (after the store holds its directory lock)."""
        if self._client is None:
            if not is_milvus_url(self.uri):
                Path(self.uri).parent.mkdir(parents=True, exist_ok=True)
            try:
                self._client = MilvusClient(self.uri)
            except MilvusException as exc:
                raise IndexStoreError(f"cannot open Milvus at {self.uri!r}: {exc}") from exc
        return self._client

    def _collection(self, db: ItemDatabase, identity: SnapshotIdentity) -> str:
        """The modality's collection, made (anew, if built with other settings) as needed,
        and loaded. The build settings are kept in the item database's store_meta (Milvus
        Lite does not keep a collection's description, nor report HNSW / IVF parameters),
        written before the collection is made: a replica that finds the collection made by
        another (sharing the database) finds its settings too, and keeps it."""
        name = f"avid_{identity.store_id}_{identity.modality}"
        lite = not is_milvus_url(self.uri)
        key, wanted = f"milvus_build:{name}", _fingerprint(identity.spec, lite)
        if self.client.has_collection(name):
            built = db.get_meta(key)
            if built != wanted:
                # Like a FAISS snapshot of other settings: made anew and filled from SQLite.
                log.info("%s was built with other settings (%s); rebuilding it", name, built)
                self.client.drop_collection(name)
        if not self.client.has_collection(name):
            db.set_meta(key, wanted)
            self._create(name, identity.spec)
        # A collection found on disk (Milvus Lite in a new process) or on a restarted server
        # may be released; searches and queries need it loaded. Idempotent when it is.
        self.client.load_collection(name)
        return name

    def _create(self, name: str, spec: IndexSpec) -> None:
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=spec.dim)
        schema.add_field("model_version", DataType.VARCHAR, max_length=MAX_ID_LENGTH * 2)
        index_type, build, _ = _index_params(spec)
        params = self.client.prepare_index_params()
        params.add_index("vector", index_type=index_type, metric_type="IP", params=build)
        if build and not is_milvus_url(self.uri):
            # pymilvus 3 sends build params as top-level keys, which a Milvus server reads,
            # but Milvus Lite 3.2 reads only a JSON "params" key (without it, IVF_FLAT gets
            # Lite's nlist=128 and HNSW M=16 / efConstruction=200 whatever was asked).
            for index in params:
                index.get_index_configs()["params"] = dict(build)
        try:
            self.client.create_collection(
                name,
                schema=schema,
                index_params=params,
                consistency_level="Strong",
            )
        except MilvusException:
            # Two replicas starting at once both saw no collection: the one that lost the
            # race ("already exists") keeps the winner's, which has the same settings.
            if not self.client.has_collection(name):
                raise
            log.info("%s was made meanwhile (by another replica); using it", name)

    def reconciled(
        self, db: ItemDatabase, identity: SnapshotIdentity
    ) -> tuple[MilvusIndex, int, int]:
        """The modality's collection brought in line with ``db``: (index, rows upserted,
        rows deleted). What opening a store does, and what ``avid migrate-index`` resumes."""
        index = MilvusIndex(
            self.client, self._collection(db, identity), identity.spec, identity.model_version
        )
        added, removed = index.reconcile(db, identity.modality)
        return index, added, removed

    def restore(self, db: ItemDatabase, identity: SnapshotIdentity, snapshot: Path) -> Restored:
        index, added, removed = self.reconciled(db, identity)
        detail = f"reconciled {index.collection} with SQLite: {added} upserted, {removed} deleted"
        log.info("%s index in Milvus, %s", identity.modality, detail)
        return Restored(index, "reconciled", detail, added + removed, None)

    def build(
        self, db: ItemDatabase, spec: IndexSpec, model_version: str, modality: Modality
    ) -> ModalityIndex:
        identity = SnapshotIdentity(db.store_id, model_version, modality, spec)
        return self.restore(db, identity, Path()).index

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
