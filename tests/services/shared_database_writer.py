"""Child process for test_shared_database: an IndexStore on its own data directory and the
PostgreSQL database that it shares with other such processes, driven by lines on stdin.

    python -m tests.services.shared_database_writer DATA_DIR DATABASE_URL NAME

Prints ``ready`` once open, then answers each command with one JSON line:
``add``: adds the shared items (content ``shared-i``, no id; in an order of its own), its
own items (``NAME-own-i``) and the contested one (content ``clash`` under the id
``NAME-clash``): ``{"shared": {hash: id}, "own": [ids], "clash": id or the error}``;
``list``: every item id the store lists; ``quit``: closes the store and exits.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np

from services.index import DuplicateContent, IndexStore, NewItem
from tests.services.index_store_helpers import VERSION, make_item

N_SHARED = 30
N_OWN = 5


def item_of(content_hash: str, item_id: str | None = None) -> NewItem:
    rng = np.random.default_rng(zlib.crc32(content_hash.encode()))
    return make_item(rng, content_hash, item_id=item_id, n_video=2, n_audio=2)


def add_all(store: IndexStore, name: str) -> dict[str, object]:
    order = range(N_SHARED) if name.endswith("a") else reversed(range(N_SHARED))
    shared = {}
    for i in order:  # one transaction each, so the processes' writes interleave
        shared[f"shared-{i}"] = store.add_item(item_of(f"shared-{i}")).item_id
    own = [store.add_item(item_of(f"{name}-own-{i}")).item_id for i in range(N_OWN)]
    try:
        clash: str = store.add_item(item_of("clash", item_id=f"{name}-clash")).item_id
    except DuplicateContent as exc:
        clash = f"DuplicateContent:{exc.item_id}"
    return {"shared": shared, "own": own, "clash": clash}


def main() -> None:
    data_dir, url, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    store = IndexStore(data_dir, model_version=VERSION, database_url=url)
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "add":
            print(json.dumps(add_all(store, name)), flush=True)
        elif command == "list":
            items, _ = store.list_items(0, 1000)
            print(json.dumps([item.item_id for item in items]), flush=True)
        elif command == "quit":
            break
    store.close()


if __name__ == "__main__":
    main()
