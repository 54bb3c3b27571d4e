"""What ``AVID_MILVUS_URI`` may be (checked without importing pymilvus)."""

from __future__ import annotations


def is_milvus_url(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "tcp://", "unix:"))


def check_milvus_uri(uri: str) -> str:
    """``uri`` if it names a Milvus Lite file (``*.db``) or a server URL; else ``ValueError``."""
    if is_milvus_url(uri) or uri.endswith(".db"):
        return uri
    raise ValueError(
        f"AVID_MILVUS_URI must be a local file ending in .db (Milvus Lite) or an http(s):// "
        f"URL of a Milvus server, got {uri!r}"
    )
