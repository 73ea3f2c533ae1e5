# syntax=docker/dockerfile:1
# visma-hooks: one receiver replica; several share one PostgreSQL (docs/deploy.md).
#   docker build -t visma-hooks .
#
# The build stage installs the locked dependencies in a layer of their own (rebuilt only when
# pyproject.toml or uv.lock change), then the service itself, as a wheel with its migrations
# inside, into /venv. The image copies only /venv: no uv, no sources, no build cache.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
# uv from PyPI, the version the Makefile pins (UV_VERSION).
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/venv
WORKDIR /src
RUN --mount=type=cache,target=/root/.cache/uv \
    --mount=type=bind,source=pyproject.toml,target=pyproject.toml \
    --mount=type=bind,source=uv.lock,target=uv.lock \
    uv sync --locked --no-install-project --no-editable
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-editable

FROM ${PYTHON_IMAGE}
ENV PYTHONUNBUFFERED=1 \
    PATH=/venv/bin:$PATH \
    DATABASE_URL=sqlite:////data/visma-hooks.db
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin visma \
    && mkdir /data && chown visma /data
COPY --from=build /venv /venv
USER 10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8000

# Liveness only: the start period covers a first start's migration; a load balancer asks
# /readyz, which also checks the database and its schema.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

# --migrate: the schema is upgraded before serving; replicas that start together on one
# PostgreSQL take turns (an advisory lock). To migrate as a release step instead, run
# `visma-hooks migrate` once and start the replicas without --migrate (docs/deploy.md).
CMD ["visma-hooks", "serve", "--host", "0.0.0.0", "--port", "8000", "--migrate"]
