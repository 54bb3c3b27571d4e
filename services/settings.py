"""The service's settings: one pydantic-settings ``Settings`` read from ``AVID_*`` variables.

``get_settings()`` is the one place the environment is read (cached). The app takes its
settings from ``create_app(settings)``, or else from the ``get_settings`` dependency, which
tests may override with ``app.dependency_overrides[get_settings]``. ``settings_from_args``
gives a command's settings: these with its command-line options applied.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from avid_model.checkpoint import DEFAULT_CHECKPOINT
from avid_model.command_args import CommandError
from services.database.url import check_database_url
from services.index import IndexType
from services.index.backend_choice import make_backend
from services.index.index_backend import IndexBackend, IndexBackendName
from services.index.milvus_uri import check_milvus_uri

REPO_ROOT = Path(__file__).resolve().parents[1]


class StartupError(RuntimeError):
    """A setting that makes the service unable to start (missing checkpoint, ...)."""


class Settings(BaseSettings):
    """Every knob of the running service; each field is read from ``AVID_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="AVID_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    checkpoint: Path | None = Field(
        default=None, description=f"checkpoint directory; default {DEFAULT_CHECKPOINT}"
    )
    data_dir: Path = Path("./avid-data")
    shared_dir: Path | None = Field(
        default=None,
        description="the storage the API and its workers share, when it holds several API "
        "data dirs (replicas, each AVID_DATA_DIR inside it): uploads travel to workers as "
        "paths relative to it; None: the data dir itself",
    )
    broker_url: str | None = Field(
        default=None, description="redis://... : inference runs on `avid worker`s; None: embedded"
    )
    result_backend: str | None = Field(
        default=None, description="where workers put task results; None: the broker's Redis"
    )
    task_timeout_s: float = Field(
        default=1800.0, gt=0, description="how long the API waits for a worker to embed one file"
    )
    broker_visibility_timeout_s: float = Field(
        default=3600.0,
        gt=0,
        description="a task not acknowledged this long (its worker died) is delivered again; "
        "keep it above the longest embedding",
    )
    worker_heartbeat_ttl_s: float = Field(
        default=15.0,
        gt=0,
        description="a worker announces itself in Redis every third of this; silent this long, "
        "it counts as gone: /readyz drops it and the API sends its running tasks again",
    )
    worker_concurrency: int = Field(
        default=2, ge=1, description="tasks one `avid worker` runs at once (threads, one model)"
    )
    api_key: SecretStr | None = Field(default=None, description="None: no authentication")
    read_api_key: SecretStr | None = Field(
        default=None,
        description="a second key that may search and read but not embed, change or delete "
        "(needs api_key)",
    )
    media_token_ttl_s: float = Field(
        default=900.0,
        gt=0,
        le=7 * 24 * 3600,
        description="how long a signed media URL (GET /items/{id}/media-url) plays",
    )
    cors_origins: str = Field(
        default="",
        description="comma-separated origins a browser may call the API from ('*': any); "
        "empty: no CORS headers (only same-origin pages, such as the service's own)",
    )
    max_upload_bytes: int = Field(default=256 * 1024**2, gt=0)
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="a request body that sends no byte for this long is cut off (408)",
    )
    max_duration_s: float = Field(default=900.0, gt=0)
    max_pixels: int = Field(default=3840 * 2160, gt=0)
    window_hop: float = Field(default=1.0, gt=0, description="seconds between window starts")
    batch_max_clips: int = Field(default=32, ge=1, description="clips per forward pass")
    batch_max_wait_ms: float = Field(default=10.0, ge=0)
    batching: bool = Field(default=True, description="False: one request per forward (benchmarks)")
    sync_max_seconds: float = Field(
        default=60.0, ge=0, description="longer files are embedded as a background job (202)"
    )
    job_workers: int = Field(default=2, ge=1, description="threads running background jobs")
    shutdown_grace_s: float = Field(
        default=30.0,
        ge=0,
        description="on SIGTERM, open requests and then running background jobs get this long "
        "in all to finish; jobs still running after it stay queued for the next start",
    )
    index_type: IndexType = "flat"
    index_backend: IndexBackendName = Field(
        default="faiss",
        description="faiss: in-process FAISS snapshotted under the data dir (default); "
        "milvus: a Milvus collection per modality at AVID_MILVUS_URI",
    )
    milvus_uri: str | None = Field(
        default=None,
        description="a local *.db file runs Milvus Lite embedded, an http(s):// URL a Milvus "
        "server; None: <data_dir>/index/milvus.db",
    )
    database_url: str | None = Field(
        default=None,
        description="postgresql://user:password@host:5432/db : items and jobs in PostgreSQL, "
        "shareable by several API processes (each with its own data dir); None: SQLite "
        "files in the data dir",
    )
    device: str = "auto"
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    compile: bool = Field(
        default=False,
        description="torch.compile the encoders (one graph per power-of-two batch size, each "
        "compiled on first use: ~1 min on a 2-core CPU; see docs/benchmarks.md)",
    )
    snapshot_every: int | None = Field(
        default=1000, ge=1, description="item changes between FAISS snapshots (None: on close only)"
    )

    @field_validator("milvus_uri")
    @classmethod
    def _milvus_uri_shape(cls, value: str | None) -> str | None:
        return None if value is None else check_milvus_uri(value)

    @field_validator("database_url")
    @classmethod
    def _database_url_shape(cls, value: str | None) -> str | None:
        return None if value is None else check_database_url(value)

    @field_validator(
        "api_key",
        "read_api_key",
        "broker_url",
        "result_backend",
        "milvus_uri",
        "database_url",
        "shared_dir",
        mode="before",
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _read_key_needs_key(self) -> Settings:
        if self.read_api_key is not None and self.api_key is None:
            raise ValueError("AVID_READ_API_KEY needs AVID_API_KEY (the key that may write)")
        if (
            self.read_api_key is not None
            and self.api_key is not None
            and self.read_api_key.get_secret_value() == self.api_key.get_secret_value()
        ):
            raise ValueError("AVID_READ_API_KEY must differ from AVID_API_KEY")
        return self

    @model_validator(mode="after")
    def _data_dir_inside_shared_dir(self) -> Settings:
        shared = self.shared_dir
        if shared is not None and not self.data_dir.resolve().is_relative_to(shared.resolve()):
            raise ValueError(
                f"AVID_DATA_DIR ({self.data_dir}) must be inside AVID_SHARED_DIR ({shared})"
            )
        return self

    @property
    def shared_root(self) -> Path:
        """What the paths sent to workers are relative to (``shared_dir``, else the data dir)."""
        return self.data_dir if self.shared_dir is None else self.shared_dir

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    def checkpoint_path(self) -> Path:
        """The checkpoint to load; raises StartupError when it does not exist."""
        path = self.checkpoint if self.checkpoint is not None else DEFAULT_CHECKPOINT
        if not path.exists():
            how = (
                "set AVID_CHECKPOINT or pass --checkpoint"
                if self.checkpoint is None
                else "check AVID_CHECKPOINT / --checkpoint"
            )
            raise StartupError(f"no model checkpoint at {path}; {how}")
        return path

    def index_backend_of(self) -> IndexBackend:
        """The index store's backend as these settings choose it."""
        uri = self.milvus_uri or str(self.index_dir / "milvus.db")
        return make_backend(self.index_backend, uri)

    @property
    def media_dir(self) -> Path:
        """Uploaded media kept for re-embedding (``<sha256><ext>``)."""
        return self.data_dir / "media"

    @property
    def index_dir(self) -> Path:
        return self.data_dir / "index"

    @property
    def scratch_dir(self) -> Path:
        """Uploads that are not kept (search queries, ``store=false``)."""
        return self.data_dir / "tmp"


@lru_cache
def get_settings() -> Settings:
    return Settings()


SERVER_OPTIONS = ("host", "port", "checkpoint", "data_dir")


def settings_from_args(
    args: argparse.Namespace,
    names: Iterable[str] = SERVER_OPTIONS,
    *,
    base: Settings | None = None,
    check_checkpoint: bool = True,
) -> Settings:
    """The environment's settings (or ``base``) with the command-line options ``names`` of
    ``args`` that were given applied; checked (``CommandError`` with a clear message)."""
    overrides: dict[str, Any] = {
        name: value for name in names if (value := getattr(args, name, None)) is not None
    }
    try:
        start = get_settings() if base is None else base
        settings = Settings.model_validate({**start.model_dump(), **overrides})
        if check_checkpoint:
            settings.checkpoint_path()  # fail now, with a clear message, not inside uvicorn
    except ValidationError as exc:
        raise CommandError(f"invalid setting: {exc}") from exc
    except StartupError as exc:
        raise CommandError(str(exc)) from exc
    return settings
