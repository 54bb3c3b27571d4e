"""Vector search: build time, single-query latency and recall@10 per index type and size.

    .venv/bin/python -m bench.search                                # 10k, 100k, 1M; flat hnsw ivf
    .venv/bin/python -m bench.search --sizes 100000 --types hnsw --ef-search 64 96 128
    .venv/bin/python -m bench.search --backends faiss milvus --sizes 100000 1000000 \
        --types flat hnsw --json bench/results/search_milvus.json   # Milvus Lite beside FAISS

Data: unit vectors drawn from a mixture of isotropic Gaussians (``--centres`` centres,
uniform on the sphere; each point is its centre plus noise of norm ``--spread``, then
normalised), queries drawn fresh from the same mixture. Embeddings of real media are
clustered like this; uniformly random 128-d vectors are not (every point is nearly
orthogonal to every other), which makes approximate search unrealistically hard and its
recall meaningless.

Each index is built and searched through the store's own classes
(``services.index.faiss_index``) with the store's default settings (or the overrides given),
so the numbers are the store's; ``--backends milvus`` adds the same rows on Milvus Lite
through ``services.index.milvus_index`` (``bench.search_milvus``: a Lite file in a temporary
directory, ``--milvus-dir`` to choose where; FLAT / HNSW / IVF_FLAT with the same settings).
Latency is per query (k=10), one query at a time; recall@10 is against exact search.
Extra rows (``--e2e-size``, 0 to skip) time the whole store path at that many vectors per
modality: an item's 10 audio windows as the query against the video
index, one result per item, alone and while another thread keeps adding items (on each
backend: the Milvus store asks Milvus for the live count on each search, see
``milvus_index``).
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np
import numpy.typing as npt

from bench.common import markdown_table, write_json
from bench.search_milvus import built_milvus_index, milvus_lite_version
from services.index import HNSWParams, IndexStore, IVFParams, NewItem, SnapshotPolicy
from services.index.backend_choice import make_backend
from services.index.faiss_index import ModalityIndex, new_index
from services.index.index_backend import INDEX_BACKENDS, IndexBackendName
from services.index.index_settings import INDEX_TYPES, IndexSpec, IndexType
from services.index.records import WindowVectors

DIM = 128
K = 10
COLUMNS = [
    "vectors",
    "backend",
    "index",
    "settings",
    "build s",
    "p50 ms",
    "p99 ms",
    "p99 cpu ms",
    "recall@10",
    "mode",
]


def mixture(
    n: int, centres: npt.NDArray[np.float32], spread: float, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """``n`` unit vectors: a random centre plus Gaussian noise of norm ~``spread``."""
    out = np.empty((n, centres.shape[1]), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        which = rng.integers(0, len(centres), stop - start)
        noise = rng.standard_normal((stop - start, centres.shape[1]), dtype=np.float32)
        chunk = centres[which] + noise * np.float32(spread / np.sqrt(centres.shape[1]))
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def unit_centres(n: int, rng: np.random.Generator) -> npt.NDArray[np.float32]:
    c = rng.standard_normal((n, DIM), dtype=np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def exact_top_k(base: npt.NDArray[np.float32], queries: npt.NDArray[np.float32]) -> np.ndarray:
    index = faiss.IndexFlatIP(DIM)
    index.add(base)
    return index.search(queries, K)[1]


def build(spec: IndexSpec, base: npt.NDArray[np.float32]) -> tuple[ModalityIndex, float]:
    """Add ``base`` in 50k-vector batches, as a stream of items would (IVF trains when the
    count first reaches its training size)."""
    index = new_index(spec)
    ids = np.arange(len(base), dtype=np.int64)
    t0 = time.perf_counter()
    for start in range(0, len(base), 50_000):
        index.add(ids[start : start + 50_000], base[start : start + 50_000])
    return index, time.perf_counter() - t0


def latencies_ms(
    search: Any, queries: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-query wall-clock and CPU (this thread) milliseconds, one query at a time. The
    CPU time leaves out time the thread spent descheduled by other load on the host."""
    for q in queries[:20]:  # warm-up
        search(q)
    wall, cpu = np.empty(len(queries)), np.empty(len(queries))
    for i, q in enumerate(queries):
        c0, t0 = time.thread_time_ns(), time.perf_counter_ns()
        search(q)
        wall[i] = (time.perf_counter_ns() - t0) / 1e6
        cpu[i] = (time.thread_time_ns() - c0) / 1e6
    return wall, cpu


def latency_columns(
    wall: npt.NDArray[np.float64], cpu: npt.NDArray[np.float64]
) -> dict[str, float]:
    return {
        "p50 ms": float(np.percentile(wall, 50)),
        "p99 ms": float(np.percentile(wall, 99)),
        "p99 cpu ms": float(np.percentile(cpu, 99)),
    }


def backend_rows(
    backend: IndexBackendName,
    spec: IndexSpec,
    base: npt.NDArray[np.float32],
    queries: npt.NDArray[np.float32],
    truth: np.ndarray,
    variants: list[IndexSpec],
    milvus_dir: Path | None,
) -> list[dict[str, Any]]:
    """``index_rows`` of ``spec`` built on ``backend`` (Milvus Lite in a temporary directory,
    removed afterwards)."""
    if backend == "faiss":
        index, build_s = build(spec, base)
        return index_rows(backend, spec, index, build_s, len(base), queries, truth, variants)
    with (
        tempfile.TemporaryDirectory(prefix="avid-bench-milvus-", dir=milvus_dir) as tmp,
        built_milvus_index(spec, base, Path(tmp)) as (milvus, build_s),
    ):
        return index_rows(backend, spec, milvus, build_s, len(base), queries, truth, variants)


def index_rows(
    backend: IndexBackendName,
    spec: IndexSpec,
    index: ModalityIndex,
    build_s: float,
    n_vectors: int,
    queries: npt.NDArray[np.float32],
    truth: np.ndarray,
    variants: list[IndexSpec],
) -> list[dict[str, Any]]:
    rows = []
    for variant in variants:
        index.spec = variant  # search-time settings only (ef_search / nprobe)
        found = np.vstack([index.search(q[None, :], K)[1] for q in queries])
        recall = np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)])
        wall, cpu = latencies_ms(lambda q: index.search(q[None, :], K), queries)
        rows.append(
            {
                "vectors": n_vectors,
                "backend": backend,
                "index": spec.index_type,
                "settings": describe(variant),
                "build s": build_s,
                **latency_columns(wall, cpu),
                "recall@10": float(recall),
                "mode": index.mode,
            }
        )
        print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
    return rows


def describe(spec: IndexSpec) -> str:
    if spec.index_type == "hnsw":
        h = spec.hnsw
        return f"M={h.m} efC={h.ef_construction} efS={h.ef_search}"
    if spec.index_type == "ivf":
        v = spec.ivf
        return f"nlist={v.nlist} nprobe={v.nprobe} train@{v.min_train_vectors}"
    return "exact"


def search_variants(spec: IndexSpec, args: argparse.Namespace) -> list[IndexSpec]:
    if spec.index_type == "hnsw" and args.ef_search:
        return [replace(spec, hnsw=replace(spec.hnsw, ef_search=e)) for e in args.ef_search]
    if spec.index_type == "ivf" and args.nprobe:
        return [replace(spec, ivf=replace(spec.ivf, nprobe=p)) for p in args.nprobe]
    return [spec]


def store_rows(
    backend_name: IndexBackendName,
    spec: IndexSpec,
    n_vectors: int,
    centres: npt.NDArray[np.float32],
    spread: float,
    n_queries: int,
    rng: np.random.Generator,
) -> list[dict[str, Any]]:
    """The store end to end: items of 10 video + 10 audio windows (an item's audio windows
    are its video windows plus noise), queried with an item's 10 audio windows."""
    windows = 10
    times = np.arange(windows, dtype=np.float64)

    def make_item(i: int) -> NewItem:
        video = mixture(windows, centres, spread, rng)
        audio = video + rng.standard_normal(video.shape, dtype=np.float32) * np.float32(0.03)
        return NewItem(
            kind="video",
            model_version="bench",
            content_hash=f"bench-{i}",
            duration=float(windows),
            video=WindowVectors.from_lists(video, times, times + 1),
            audio=WindowVectors.from_lists(audio, times, times + 1),
        )

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = IndexStore(
            Path(tmp),
            model_version="bench",
            index_type=spec.index_type,
            hnsw=spec.hnsw,
            ivf=spec.ivf,
            snapshots=SnapshotPolicy(every_changes=None, every_seconds=None),
            backend=make_backend(backend_name, str(Path(tmp) / "milvus" / "milvus.db")),
        )
        n_items = n_vectors // windows
        t0 = time.perf_counter()
        ids = []
        for start in range(0, n_items, 1000):
            batch = [make_item(i) for i in range(start, min(n_items, start + 1000))]
            ids += [r.item_id for r in store.add_items(batch)]
        build_s = time.perf_counter() - t0
        chosen = [ids[i] for i in rng.integers(0, len(ids), n_queries)]
        queries = [store.vectors_of(item_id, "audio").vectors for item_id in chosen]
        for label, writer in (("alone", False), ("+ writer thread", True)):
            stop = threading.Event()
            thread = threading.Thread(
                target=_keep_adding, args=(store, make_item, n_items, stop), daemon=True
            )
            if writer:
                thread.start()
            hit1 = [
                store.search(q, "video", K)[0].item_id == item_id
                for q, item_id in zip(queries, chosen, strict=True)
            ]
            wall, cpu = latencies_ms(lambda q: store.search(q, "video", K), np.stack(queries))
            stop.set()
            if writer:
                thread.join()
            rows.append(
                {
                    "vectors": n_vectors,
                    "backend": backend_name,
                    "index": f"store {spec.index_type}",
                    "settings": f"item query (10 windows), {label}",
                    "build s": build_s,
                    **latency_columns(wall, cpu),
                    "recall@10": float(np.mean(hit1)),
                    "mode": "hit@1 (own item)",
                }
            )
            print(markdown_table(rows[-1:], COLUMNS).splitlines()[-1], flush=True)
        store.close()
    return rows


def _keep_adding(store: IndexStore, make_item: Any, first: int, stop: threading.Event) -> None:
    i = first
    while not stop.is_set():
        store.add_item(make_item(i))
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--types", nargs="+", choices=INDEX_TYPES, default=list(INDEX_TYPES))
    parser.add_argument(
        "--backends", nargs="+", choices=INDEX_BACKENDS, default=["faiss"], help="rows of each"
    )
    parser.add_argument(
        "--milvus-dir", type=Path, default=None, help="where Milvus Lite files go (default: tmp)"
    )
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--centres", type=int, default=2000, help="mixture components")
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm around a centre")
    parser.add_argument("--hnsw-m", type=int, default=HNSWParams.m)
    parser.add_argument("--ef-construction", type=int, default=HNSWParams.ef_construction)
    parser.add_argument("--ef-search", type=int, nargs="*", default=[], help="extra rows")
    parser.add_argument("--nlist", type=int, default=IVFParams.nlist)
    parser.add_argument("--nprobe", type=int, nargs="*", default=[], help="extra rows")
    parser.add_argument("--e2e-size", type=int, default=100_000, help="0: skip store rows")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=Path("bench/results/search.json"))
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    centres = unit_centres(args.centres, rng)
    queries = mixture(args.queries, centres, args.spread, rng)
    rows: list[dict[str, Any]] = []
    for size in args.sizes:
        base = mixture(size, centres, args.spread, rng)
        truth = exact_top_k(base, queries)
        for backend in args.backends:
            for index_type in args.types:
                spec = make_spec(index_type, args)
                variants = search_variants(spec, args) if index_type != "flat" else [spec]
                rows += backend_rows(backend, spec, base, queries, truth, variants, args.milvus_dir)
        del base
    if args.e2e_size:
        for backend in args.backends:
            for index_type in args.types:
                spec = make_spec(index_type, args)
                rows += store_rows(
                    backend, spec, args.e2e_size, centres, args.spread, args.queries, rng
                )
    milvus = f", {milvus_lite_version()}" if "milvus" in args.backends else ""
    header = (
        f"{platform.processor() or platform.machine()}, faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} OpenMP threads{milvus}, k={K}, {args.queries} queries, "
        f"mixture of {args.centres} Gaussians, spread {args.spread}"
    )
    print(f"\n{header}\n")
    print(markdown_table(rows, COLUMNS))
    settings = vars(args) | {"json": str(args.json), "milvus_dir": str(args.milvus_dir)}
    write_json(args.json, {"header": header, "args": settings, "rows": rows})


def make_spec(index_type: str, args: argparse.Namespace) -> IndexSpec:
    return IndexSpec(
        index_type=cast(IndexType, index_type),
        dim=DIM,
        hnsw=HNSWParams(m=args.hnsw_m, ef_construction=args.ef_construction),
        ivf=IVFParams(nlist=args.nlist),
    )


if __name__ == "__main__":
    main()
