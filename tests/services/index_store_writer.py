"""Child process for the kill -9 test: adds items forever, printing each id once
``add_item`` has returned (acknowledged). Item ``i``'s vectors come from seed ``i``, so the
test can rebuild them.

    python -m tests.services.index_store_writer DATA_DIR INDEX_TYPE [DATABASE_URL]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from services.index import IndexStore, NewItem, SnapshotPolicy
from services.index.index_settings import IndexType
from tests.services.index_store_helpers import VERSION, make_item


def item_for(i: int) -> NewItem:
    rng = np.random.default_rng(10_000 + i)
    return make_item(rng, f"sha-{i}", item_id=f"item-{i}", n_video=3, n_audio=3)


def main() -> None:
    data_dir, index_type = Path(sys.argv[1]), sys.argv[2]
    database_url = sys.argv[3] if len(sys.argv) > 3 else None
    kind: IndexType = "hnsw" if index_type == "hnsw" else "flat"
    # Frequent snapshots, so that the kill can also land in the middle of one.
    store = IndexStore(
        data_dir,
        model_version=VERSION,
        index_type=kind,
        snapshots=SnapshotPolicy(every_changes=7, every_seconds=None),
        database_url=database_url,
    )
    i = 0
    while True:
        record = store.add_item(item_for(i))
        print(record.item_id, flush=True)
        i += 1


if __name__ == "__main__":
    main()
