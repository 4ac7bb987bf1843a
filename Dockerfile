# wfsched container image. Build from the repository root:
#
#   docker build -t wfsched:0.1.0 --build-arg VERSION=0.1.0 .
#
# Stages: `build` turns the source tree into a wheel; `install` puts that wheel and its
# dependencies into a pip-less virtualenv at /opt/wfsched; the runtime stage copies only that
# virtualenv onto a clean slim Python base and runs as the numeric non-root user 65532. The
# entrypoint is exec-form, so no shell is needed at run time. The Helm chart (charts/wfsched)
# runs it with a read-only root filesystem and an emptyDir on /tmp.
#
# The image has the daemon only: .dockerignore keeps the developer tooling (scheduler/devtools:
# local control plane, replay, simulator; and the subcommands that use it) out of the build
# context, so the wheel built here has none of it, and the runtime dependencies have no
# cryptography (the `tools` extra). The install stage checks both.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY scheduler/ scheduler/
COPY policies/ policies/
COPY predictors/ predictors/
RUN python -m pip wheel --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS install
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
COPY --from=build /wheels/ /wheels/
# The virtualenv gets no pip of its own; the base image's pip installs into it. Dependencies
# come from the package index, constrained by the wheel's own metadata.
# Checks: the whole daemon imports, its default configuration is valid, and neither the
# developer tooling nor cryptography came along.
RUN python -m venv --without-pip /opt/wfsched \
    && python -m pip --python /opt/wfsched/bin/python install --no-cache-dir --compile /wheels/*.whl \
    && /opt/wfsched/bin/python -c "import scheduler.runtime.daemon, policies, predictors" \
    && /opt/wfsched/bin/wfsched --version \
    && /opt/wfsched/bin/wfsched run --check-config \
    && /opt/wfsched/bin/python -c "from importlib.util import find_spec; import sys; \
        sys.exit(find_spec('scheduler.devtools') or find_spec('cryptography'))"

FROM ${PYTHON_IMAGE} AS runtime
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="wfsched" \
      org.opencontainers.image.description="A workflow-aware secondary scheduler for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
COPY --from=install /opt/wfsched/ /opt/wfsched/
ENV PATH=/opt/wfsched/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
WORKDIR /tmp
USER 65532:65532
# health and metrics (health_port), CWS REST API (rest_port)
EXPOSE 10259 8080
# Arguments follow: e.g. `--config /etc/wfsched/config.yaml` (what the chart passes).
ENTRYPOINT ["/opt/wfsched/bin/wfsched", "run"]
