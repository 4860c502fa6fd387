# syntax=docker/dockerfile:1
# The operator image: `session-operator` (run, serve-api, heartbeat) on a slim Python.
# Untested here: this machine has no container engine. `make deploy` builds it for kind.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/session-operator
WORKDIR /src
# The dependencies exactly as locked, each checked against its hash; then the project alone.
COPY requirements.lock ./
RUN /opt/session-operator/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN /opt/session-operator/bin/pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/session-operator/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# Same path as in the build stage: the venv's scripts name their interpreter by it.
COPY --from=build /opt/session-operator /opt/session-operator
# The chart runs it as this user too, with a read-only root filesystem.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["session-operator"]
CMD ["run"]
