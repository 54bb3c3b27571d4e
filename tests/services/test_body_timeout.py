"""A request body that stalls is cut off after ``body_timeout_s`` with a JSON 408: a raw
socket sends the headers and part of a multipart body, then nothing, to a real uvicorn."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from services.api.app import create_app
from services.settings import Settings
from tests.services.conftest import SettingsFactory
from tests.services.server_process import free_port

TIMEOUT_S = 1.0


@pytest.fixture
def server(make_settings: SettingsFactory) -> Iterator[Settings]:
    settings = make_settings(port=free_port(), body_timeout_s=TIMEOUT_S)
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=settings.port)
    config.log_level = "warning"
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    try:
        yield settings
    finally:
        server.should_exit = True
        thread.join(30)


def read_response(sock: socket.socket, timeout: float) -> bytes:
    """One HTTP response (headers and a Content-Length body), or what came before ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if sep and lengths and len(body) >= lengths[0]:
                break
    except TimeoutError:
        pass
    return data


def stalled_upload(port: int) -> bytes:
    """The headers and the first 1,000 bytes of a 1 MB multipart upload (never the rest)."""
    boundary = "avidboundary"
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="clip.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode() + b"\x00" * 1000
    request = (
        "POST /embed/video HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Content-Length: 1000000\r\n\r\n"
    ).encode()
    return request + head


def test_a_stalled_upload_is_cut_off_with_a_json_408(server: Settings) -> None:
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(stalled_upload(server.port))  # ... and never the rest
        started = time.monotonic()
        answer = read_response(sock, timeout=TIMEOUT_S + 10)
        waited = time.monotonic() - started
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer[:300]
    body = json.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["error"]["code"] == "body_timeout"
    assert f"{TIMEOUT_S:g} s" in body["error"]["message"]
    assert TIMEOUT_S * 0.9 <= waited < TIMEOUT_S + 5
    # Nothing of the partial upload is left behind.
    left = [p for folder in (server.media_dir, server.scratch_dir) for p in folder.glob("*")]
    assert left == []


def test_a_hundred_stalled_uploads_do_not_hold_the_server(server: Settings) -> None:
    sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(100)]
    try:
        for sock in sockets:
            sock.sendall(stalled_upload(server.port))
        # While all of them stall, the server answers everyone else at once.
        with socket.create_connection(("127.0.0.1", server.port)) as probe:
            started = time.monotonic()
            probe.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode()
            )
            health = read_response(probe, timeout=5)
            assert health.startswith(b"HTTP/1.1 200"), health[:300]
            assert time.monotonic() - started < TIMEOUT_S
        # And each stalled one is cut off: a 408 for every socket, none hangs.
        answers = [read_response(sock, timeout=TIMEOUT_S + 15) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), {a[:40] for a in answers}
    left = [p for folder in (server.media_dir, server.scratch_dir) for p in folder.glob("*")]
    assert left == []
