# syntax=docker/dockerfile:1
# The API image: `avid serve` (FastAPI). In the compose stack it runs in distributed mode
# (AVID_BROKER_URL set): GPU workers embed, this process owns the index (one writer).
#
# Size, honestly: about 5 GB. uv.lock pins torch 2.11.0 from PyPI, the CUDA 13.0 build, whose
# nvidia-* wheels (cuBLAS, cuDNN, NCCL, ...: ~2.7 GB) are hard dependencies of the wheel:
# `import torch` fails without them, and the API imports torch (avid_model preprocessing,
# embedded mode). A CPU-only API image (~1 GB) needs the `+cpu` torch wheel, i.e. a second
# resolution of the project (a uv index for CPU torch and a separate lock or a conflicting
# extra); it cannot come from this single lock. What is left out here: triton (~0.6 GB, used
# only by torch.compile on CUDA GPUs), the dev group, uv itself and the build stage.
#
# Build from the repository root: docker build -f docker/api.Dockerfile -t avid-api .

ARG PYTHON_IMAGE=python:3.11-slim
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# ---------------------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /src
# Dependencies first (a layer that survives source edits), exactly as uv.lock pins them.
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    uv sync --locked --no-dev --no-install-project --no-install-package triton
# Then the project itself, installed as a wheel (no source tree needed at run time).
COPY pyproject.toml uv.lock README.md ./
COPY avid_model ./avid_model
COPY training ./training
COPY services ./services
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable --no-install-package triton

# -------------------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 avid \
    && useradd --system --uid 10001 --gid avid --create-home --home-dir /home/avid \
       --shell /usr/sbin/nologin avid \
    && mkdir -p /data \
    && chown avid:avid /data
COPY --from=build /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    AVID_DATA_DIR=/data \
    AVID_HOST=0.0.0.0
WORKDIR /home/avid
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["avid", "serve", "--host", "0.0.0.0"]
