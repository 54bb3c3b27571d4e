"""The Docker stack's structure: docker-compose.yml and docker/*.Dockerfile, read as files (no
Docker engine runs where the tests do, so nothing is built or started here).

What the images weigh (not checked here, see the Dockerfiles): the API image is about 5 GB and
the worker image about 8 GB, because uv.lock pins torch 2.11.0+cu130, whose CUDA wheels
(~2.7 GB) torch cannot be imported without; a CPU-only API image would need a second
resolution with the CPU torch wheel, which one lock cannot give.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml

from services.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SCALE = {"etcd", "minio", "milvus", "postgres", "api-1", "api-2", "proxy"}
REPLICAS = ("api-1", "api-2")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, USER, ...
    args: str


def dockerfile_stages(path: Path) -> list[list[Instruction]]:
    """The instructions of each stage (continuation lines joined, comments dropped), with
    ``${ARG}`` in FROM lines replaced by the global ARG defaults."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: list[list[Instruction]] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "ARG" and not stages and "=" in instruction.args:
            name, _, default = instruction.args.partition("=")
            global_args[name] = default
        if instruction.keyword == "FROM":
            resolved = re.sub(r"\$\{(\w+)\}", lambda m: global_args[m.group(1)], instruction.args)
            stages.append([Instruction("FROM", resolved)])
        elif stages:
            stages[-1].append(instruction)
    return stages


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def volume_mounts(svc: dict[str, Any]) -> dict[str, str]:
    """target path -> source (a named volume or a host path) of the service's volumes."""
    mounts: dict[str, str] = {}
    for volume in svc.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = volume["source"]
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def dockerfile_of(name: str) -> Path:
    build = service(name)["build"]
    return (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve()


def final_stage(name: str) -> list[Instruction]:
    return dockerfile_stages(dockerfile_of(name))[-1]


def base_image(stage: list[Instruction]) -> str:
    return stage[0].args.split()[0]


def test_compose_runs_redis_the_api_and_a_gpu_worker() -> None:
    services = compose()["services"]
    assert {name for name, svc in services.items() if "profiles" not in svc} == {
        "redis",
        "api",
        "worker",
    }
    for name, svc in services.items():
        test = svc["healthcheck"]["test"]
        assert test[0] in {"CMD", "CMD-SHELL"}, name
        assert len(test) > 1, name
    for name in ("api", "worker"):
        depends = services[name]["depends_on"]
        assert depends["redis"]["condition"] == "service_healthy", name
    assert services["api"]["command"] == ["avid", "serve", "--host", "0.0.0.0"]
    assert "/healthz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["worker"]["command"][:2] == ["avid", "worker"]

    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in services["api"]  # the API needs no GPU


def test_api_and_worker_share_the_data_volume_at_avid_data_dir() -> None:
    named = set(compose()["volumes"])
    data_dirs = {}
    for name in ("api", "worker"):
        svc = service(name)
        data_dir = svc["environment"]["AVID_DATA_DIR"]
        assert volume_mounts(svc)[data_dir] in named, name
        data_dirs[name] = (data_dir, volume_mounts(svc)[data_dir])
    assert data_dirs["api"] == data_dirs["worker"]  # same volume, same path in both


def test_broker_is_the_redis_service_with_persistence_on() -> None:
    for name in ("api", "worker"):
        url = urlsplit(service(name)["environment"]["AVID_BROKER_URL"])
        assert (url.scheme, url.hostname, url.port) == ("redis", "redis", 6379), name
    redis = service("redis")
    command = redis["command"]
    words = command if isinstance(command, list) else command.split()
    assert words[words.index("--appendonly") + 1] == "yes"
    assert volume_mounts(redis)["/data"] in set(compose()["volumes"])


def test_images_build_from_existing_dockerfiles_and_the_lock() -> None:
    for name in ("api", "worker", *REPLICAS):
        build = service(name)["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT
        stages = dockerfile_stages(dockerfile_of(name))
        assert len(stages) >= 2, f"{name}: multi-stage build expected"
        runs = [i.args for stage in stages for i in stage if i.keyword == "RUN"]
        syncs = [r for r in runs if "uv sync" in r]
        assert syncs, name
        for command in syncs:
            assert "--locked" in command, command
            assert "--no-dev" in command, command
        assert not any("pip install" in r for r in runs), name
        lock_inputs = [i for s in stages for i in s if i.keyword in {"RUN", "COPY"}]
        assert any("uv.lock" in i.args for i in lock_inputs), name


def test_images_run_as_the_same_non_root_user_with_a_healthcheck() -> None:
    users = {}
    for name in ("api", "worker"):
        stage = final_stage(name)
        user_lines = [i.args for i in stage if i.keyword == "USER"]
        assert user_lines, f"{name}: no USER in the final stage"
        user = user_lines[-1].split(":")[0]
        assert user not in {"root", "0"}, name
        users[name] = user
        assert any(i.keyword == "HEALTHCHECK" for i in stage), name
        assert not any(i.keyword == "COPY" and "uv" in i.args.split()[-1] for i in stage)
    assert users["api"] == users["worker"]  # one owner for the shared volume's files


def test_base_images_match_the_locked_torch() -> None:
    assert base_image(final_stage("api")) == "python:3.11-slim"
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {p["name"]: p["version"] for p in lock["package"]}
    assert versions["torch"] == "2.11.0"
    cuda = re.fullmatch(
        r"nvidia/cuda:(\d+\.\d+)\.\d+-runtime-ubuntu[\d.]+", base_image(final_stage("worker"))
    )
    assert cuda is not None, base_image(final_stage("worker"))
    locked_cuda = ".".join(versions["cuda-toolkit"].split(".")[:2])
    assert cuda.group(1) == locked_cuda == "13.0"


def dockerignore_allows(relative: str) -> bool:
    """Whether the build context keeps ``relative`` (the last matching pattern wins)."""
    kept = True
    parts = relative.split("/")
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            kept = negate
    return kept


def test_build_context_holds_what_the_dockerfiles_copy() -> None:
    assert not dockerignore_allows(".venv/bin/python")
    assert not dockerignore_allows("runs/x/log.jsonl")
    for name in ("api", "worker"):
        for stage in dockerfile_stages(dockerfile_of(name)):
            for instruction in stage:
                words = instruction.args.split()
                if instruction.keyword != "COPY" or any(w.startswith("--from") for w in words):
                    continue
                for source in words[:-1]:
                    assert (ROOT / source).exists(), source
                    assert dockerignore_allows(source.rstrip("/")), source


def load_healthcheck() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "worker_healthcheck", ROOT / "docker" / "worker_healthcheck.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_worker_healthcheck_fails_without_a_broker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AVID_BROKER_URL", raising=False)
    assert load_healthcheck().main([]) == 1
    assert "AVID_BROKER_URL is not set" in capsys.readouterr().err


@pytest.mark.redis
def test_worker_healthcheck_ignores_other_hosts_workers() -> None:
    url = "redis://127.0.0.1:6379/15"  # a ping leaves only kombu binding keys there
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis server on 127.0.0.1:6379")
    assert load_healthcheck().ping_own_worker(url, "no-such-container", 0.3) == []


# ----------------------------------------------------------------------- the scale profile


def interpolated(value: object) -> str:
    """``value`` as compose passes it when no variable is set: ``${NAME:-default}`` -> default."""
    return re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(value))


def environment_of(name: str) -> dict[str, str]:
    return {key: interpolated(value) for key, value in service(name)["environment"].items()}


def settings_of(name: str) -> Settings:
    """The service's ``Settings`` from its compose environment (validated as at start)."""
    env = environment_of(name)
    return Settings.model_validate({k.removeprefix("AVID_").lower(): v for k, v in env.items()})


def healthy_dependencies(name: str) -> set[str]:
    depends = service(name)["depends_on"]
    return {dep for dep, how in depends.items() if how["condition"] == "service_healthy"}


def test_the_scale_profile_runs_milvus_standalone_and_postgres() -> None:
    services = compose()["services"]
    assert {name for name, svc in services.items() if svc.get("profiles") == ["scale"]} == SCALE
    milvus = service("milvus")
    assert milvus["command"] == ["milvus", "run", "standalone"]
    assert milvus["image"].startswith("milvusdb/milvus:v2.")
    assert environment_of("milvus") == {
        "ETCD_ENDPOINTS": "etcd:2379",
        "MINIO_ADDRESS": "minio:9000",
    }
    assert healthy_dependencies("milvus") == {"etcd", "minio"}
    assert "localhost:9091/healthz" in " ".join(milvus["healthcheck"]["test"])
    assert "-listen-client-urls=http://0.0.0.0:2379" in service("etcd")["command"]
    assert service("postgres")["image"].startswith("postgres:15")  # what the tests ran on
    named = set(compose()["volumes"])
    for name, path in (
        ("etcd", "/etcd"),
        ("minio", "/minio_data"),
        ("milvus", "/var/lib/milvus"),
        ("postgres", "/var/lib/postgresql/data"),
    ):
        assert volume_mounts(service(name))[path] in named, name  # state survives a restart
        assert "ports" not in service(name), name  # on the compose network only


def test_replicas_share_postgres_milvus_and_the_workers_volume() -> None:
    api, worker = service("api"), settings_of("worker")
    postgres = environment_of("postgres")
    data_dirs = set()
    for name in REPLICAS:
        replica = service(name)
        for key in ("command", "build", "image", "healthcheck"):
            assert replica[key] == api[key], (name, key)
        assert "ports" not in replica, name  # reached through the proxy
        assert healthy_dependencies(name) == {"redis", "postgres", "milvus"}, name

        settings = settings_of(name)
        assert settings.index_backend == "milvus"
        milvus = urlsplit(settings.milvus_uri or "")
        assert (milvus.scheme, milvus.hostname, milvus.port) == ("http", "milvus", 19530)
        db = urlsplit(settings.database_url or "")
        assert (db.hostname, db.port, db.path) == ("postgres", 5432, f"/{postgres['POSTGRES_DB']}")
        assert (db.username, db.password) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
        )
        for key in ("AVID_BROKER_URL", "AVID_CHECKPOINT"):  # the worker's broker and model
            assert environment_of(name)[key] == environment_of("worker")[key], key

        # Its own data dir, inside the shared dir, which is the worker's data dir on the same
        # volume: the worker resolves the replica's upload paths (relative to it).
        assert settings.shared_dir == worker.shared_root == worker.data_dir
        assert settings.data_dir.is_relative_to(settings.shared_root)
        shared = str(settings.shared_root)
        assert volume_mounts(replica)[shared] == volume_mounts(service("worker"))[shared]
        data_dirs.add(settings.data_dir)
    assert len(data_dirs) == len(REPLICAS)  # one data dir lock each


def test_the_proxy_spreads_requests_over_both_replicas() -> None:
    proxy = service("proxy")
    assert proxy["image"].startswith("nginx:")
    assert healthy_dependencies("proxy") == set(REPLICAS)
    (config_mount,) = proxy["volumes"]
    source, target, mode = config_mount.split(":")
    assert (target, mode) == ("/etc/nginx/conf.d/default.conf", "ro")
    config = (COMPOSE.parent / source).read_text()
    port = Settings().port  # what `avid serve --host 0.0.0.0` listens on in the replicas
    assert re.findall(r"^\s*server\s+(\S+:\d+)", config, re.M) == [f"{r}:{port}" for r in REPLICAS]
    (listen,) = re.findall(r"^\s*listen\s+(\d+);", config, re.M)
    (published,) = proxy["ports"]
    assert published == f"127.0.0.1:{listen}:{listen}"  # loopback only, as the api
    assert f"127.0.0.1:{listen}/healthz" in " ".join(proxy["healthcheck"]["test"])

    def directive(name: str) -> str:
        (value,) = re.findall(rf"^\s*{name}\s+([^;]+);", config, re.M)
        return value

    size = directive("client_max_body_size")
    assert size.endswith("m")
    assert int(size[:-1]) * 1024**2 >= Settings().max_upload_bytes  # the API's 413, not nginx's
    assert directive("proxy_request_buffering") == "off"
    assert directive("proxy_pass") == "http://avid_api"
