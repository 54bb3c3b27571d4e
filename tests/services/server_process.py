"""A real ``avid serve`` in a subprocess (CPU, a free port), for the fault tests: kill -9,
SIGTERM, restarts on the same data directory."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """``avid serve`` on ``data_dir``; output in ``log_path``. ``env``: extra AVID_* settings.
    ``start`` waits up to 240 s: on a loaded 2-core machine (a training run beside the tests,
    under ``nice``) importing torch and loading the model alone has taken over 90 s."""

    def __init__(self, checkpoint: Path, data_dir: Path, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.env = {
            **os.environ,
            "AVID_CHECKPOINT": str(checkpoint),
            "AVID_DATA_DIR": str(data_dir),
            "AVID_DEVICE": "cpu",
            "AVID_BATCH_MAX_WAIT_MS": "2",
            "OMP_NUM_THREADS": "1",
            "PYTHONUNBUFFERED": "1",
            **env,
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240.0) -> ServerProcess:
        command = [sys.executable, "-m", "avid_model.cli", "serve", "--port", str(self.port)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"avid serve exited ({self.process.returncode}):\n{self.log()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                self.kill()  # no fixture teardown runs for a server that never started
                pytest.fail(f"avid serve not ready after {timeout} s:\n{self.log()}")
            time.sleep(0.2)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(20)

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM (uvicorn's graceful shutdown); its exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"avid serve did not stop within {timeout} s of SIGTERM:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
