# syntax=docker/dockerfile:1
# The GPU worker image: `avid worker` (Celery), one per GPU, embedding the files the API hands
# it as paths on the shared data volume.
#
# Base: the CUDA 13.0 runtime that torch 2.11.0+cu130 (pinned by uv.lock) is built for; the
# host needs an NVIDIA driver for CUDA 13.0 and the NVIDIA Container Toolkit. Python is a
# uv-managed CPython 3.11 copied in from the build stage (Ubuntu 24.04 ships 3.12).
#
# Size, honestly: about 8 GB: the CUDA runtime base (~3 GB) plus the locked environment
# (~5.5 GB: torch ~1.1 GB, its nvidia-* CUDA wheels ~2.7 GB, triton ~0.6 GB). torch loads the
# CUDA libraries of its own wheels, so the runtime base's copies go unused; the much smaller
# `nvidia/cuda:13.0.2-base-ubuntu24.04` (pass --build-arg CUDA_IMAGE=...) would do as well,
# since only the driver comes from the host.
#
# Build from the repository root: docker build -f docker/worker.Dockerfile -t avid-worker .

ARG CUDA_IMAGE=nvidia/cuda:13.0.2-runtime-ubuntu24.04
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9
ARG PYTHON_VERSION=3.11

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------- build stage
FROM ${CUDA_IMAGE} AS build
ARG PYTHON_VERSION
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_INSTALL_DIR=/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN uv python install ${PYTHON_VERSION}
WORKDIR /src
# Dependencies first (a layer that survives source edits), exactly as uv.lock pins them.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project --python ${PYTHON_VERSION}
# Then the project itself, installed as a wheel (no source tree needed at run time).
COPY pyproject.toml uv.lock README.md ./
COPY avid_model ./avid_model
COPY training ./training
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --python ${PYTHON_VERSION}

# -------------------------------------------------------------------------- runtime stage
FROM ${CUDA_IMAGE}
RUN groupadd --system --gid 10001 avid \
    && useradd --system --uid 10001 --gid avid --create-home --home-dir /home/avid \
       --shell /usr/sbin/nologin avid \
    && mkdir -p /data \
    && chown avid:avid /data
COPY --from=build /python /python
COPY --from=build /app/.venv /app/.venv
COPY docker/worker_healthcheck.py /app/worker_healthcheck.py
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AVID_DATA_DIR=/data \
    AVID_DEVICE=cuda
WORKDIR /home/avid
USER 10001:10001
# Celery ping of this container's worker over the broker (imports Celery only, not torch).
HEALTHCHECK --interval=30s --timeout=15s --start-period=60s --retries=3 \
    CMD ["python", "/app/worker_healthcheck.py"]
CMD ["avid", "worker"]
