"""``avid serve``'s uvicorn: one grace period (``AVID_SHUTDOWN_GRACE_S``) from the first
SIGTERM (or Ctrl-C) to the end of the lifespan.

uvicorn stops listening and gives open requests up to the grace
(``timeout_graceful_shutdown``); the lifespan then gives running background jobs what is left
of it (``ShutdownClock``), leaves the ones still running queued on disk for the next start,
closes the model and the index, and the command exits with status 0. A second Ctrl-C skips
the lifespan (the jobs' records then say running; the next start queues them again).
"""

from __future__ import annotations

import math
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from services.api.app import ShutdownClock
from services.settings import Settings


class GracefulServer(uvicorn.Server):
    """uvicorn's server that starts the app's ``ShutdownClock`` on the first signal."""

    def __init__(self, config: uvicorn.Config, clock: ShutdownClock) -> None:
        super().__init__(config)
        self.clock = clock

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.clock.start()
        super().handle_exit(sig, frame)


def _stopped(sig: int, frame: FrameType | None) -> None:
    """uvicorn raises the signal again after its graceful shutdown: here that is a clean stop."""


def run_server(app: FastAPI, settings: Settings, *, log_level: str) -> None:
    """Serve ``app`` on the settings' host and port until a signal; returns after shutdown."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),
    )
    server = GracefulServer(config, app.state.shutdown_clock)
    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
