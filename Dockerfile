# syntax=docker/dockerfile:1
#
# flow-router gateway image. Build from the repository root:
#
#   docker build -t flow-router:0.1.0 .
#
# Configure it with FLOW_ROUTER_* variables (docs/configuration.md), e.g.
#
#   docker run -p 127.0.0.1:8080:8080 -e FLOW_ROUTER_INSECURE=1 \
#     -e FLOW_ROUTER_STORE=redis://redis:6379/0 \
#     -e FLOW_ROUTER_UPSTREAM='http://executor:9090/flows/{flow}/versions/{version}/executions' \
#     flow-router:0.1.0
#
# Arguments after the image name are passed to `flow-router serve`.
# tests/deploy/test_dockerfile.py lints this file with hadolint and runs its pip
# commands for a clean venv (no container engine is needed for either).

# -- builder: wheels of flow-router and of every dependency --------------------------
FROM python:3.11-slim-bookworm AS builder
WORKDIR /src
# README.md is the package's long description (pyproject.toml `readme`).
COPY pyproject.toml README.md ./
COPY router ./router
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# -- runtime: the installed wheels, tini, an unprivileged user ---------------------------
FROM python:3.11-slim-bookworm

# tini as PID 1 reaps the worker processes' orphans and forwards SIGTERM;
# the entrypoint execs flow-router, so no shell sits between them.
# Not pinned (DL3008): the base image tag pins the Debian release, and an exact
# package version breaks the build as soon as the archive ships a security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/*

# Installed from the builder's wheels only (--no-index): the runtime stage never
# reaches a package index, and the wheels are bind-mounted, not copied into a layer.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels /wheels/flow_router-*.whl

COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/flow-router-entrypoint
COPY --chmod=0755 deploy/docker/healthcheck.py /usr/local/bin/flow-router-healthcheck

RUN groupadd --system --gid 10001 flowrouter \
    && useradd --system --uid 10001 --gid flowrouter --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin flowrouter
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001

# Listen on every interface of the container. flow-router refuses a non-loopback
# address unless callers must sign their requests (FLOW_ROUTER_CREDENTIALS, a
# mounted JSON file of access keys) or FLOW_ROUTER_INSECURE=1 says something in
# front authenticates them (releases before request signing accept neither and
# authenticate nobody: publish the port only to networks you trust).
ENV FLOW_ROUTER_HOST=0.0.0.0 \
    FLOW_ROUTER_PORT=8080 \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
EXPOSE 8080

# On SIGTERM flow-router stops accepting, drains requests in progress for up to
# --drain-timeout (30 s) and gives its workers 5 s more to exit: allow 40 s before
# the SIGKILL (docker stop --time 40, compose stop_grace_period, Kubernetes
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "/usr/local/bin/flow-router-healthcheck", "/healthz"]

# The entrypoint sets FLOW_ROUTER_WORKERS from the container's CPU limit unless
# it is set, then execs `flow-router serve` with the arguments given to the image.
ENTRYPOINT ["tini", "--", "flow-router-entrypoint", "flow-router", "serve"]
CMD []
