"""The worker container's HEALTHCHECK: exit 0 when an ``avid worker`` of this container
answers a Celery ping sent over the broker (``AVID_BROKER_URL``), 1 otherwise.

``avid worker`` names its node ``avid-<pid>@<hostname>``; the ping goes to ``*@<hostname>``
only, so one container's check never counts another container's worker. Imports Celery alone
(not torch or the model), to stay cheap at every interval. Usage: ``python
worker_healthcheck.py [TIMEOUT_S]``.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Sequence

from celery import Celery


def ping_own_worker(broker_url: str, hostname: str, timeout_s: float) -> list[str]:
    """Names of the workers on ``hostname`` that answered within ``timeout_s``."""
    app = Celery("avid-healthcheck", broker=broker_url, set_as_current=False)
    try:
        replies = app.control.ping(
            timeout=timeout_s, pattern=f"*@{hostname}", matcher="glob", limit=1
        )
    finally:
        app.close()
    return [name for reply in replies for name in reply if name.endswith(f"@{hostname}")]


def main(argv: Sequence[str] = ()) -> int:
    broker_url = os.environ.get("AVID_BROKER_URL", "")
    if not broker_url:
        print("unhealthy: AVID_BROKER_URL is not set", file=sys.stderr)
        return 1
    timeout_s = float(argv[0]) if argv else 5.0
    hostname = socket.gethostname()
    try:
        answered = ping_own_worker(broker_url, hostname, timeout_s)
    except Exception as exc:  # the broker cannot be reached: unhealthy, not a traceback
        print(f"unhealthy: cannot ping over {broker_url}: {exc}", file=sys.stderr)
        return 1
    if not answered:
        print(f"unhealthy: no worker on {hostname} answered in {timeout_s} s", file=sys.stderr)
        return 1
    print(f"healthy: {', '.join(answered)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
