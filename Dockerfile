# The operator image: `session-operator` (run, serve-api, heartbeat) in a virtualenv on a
# Debian-based Python 3.11. `make image` builds it (docs/image.md).
#
# BASE_IMAGE: an image with python3 (3.11) and its venv module. `make image` passes a
# Debian bookworm base it makes with debootstrap (pinned by hack/image/debian-base.lock);
# where a registry can be reached, python:3.11-slim works as well.
ARG BASE_IMAGE

FROM ${BASE_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/session-operator
WORKDIR /src
# The dependencies exactly as locked, each checked against its hash (setuptools, the build
# backend, too); then the project alone, built with that setuptools, nothing downloaded.
# The optional build secret `ca-bundle` is a CA bundle for pip to trust, for machines that
# reach PyPI through a TLS-inspecting proxy; it is not kept in any layer.
COPY requirements.lock ./
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/session-operator/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN --mount=type=secret,id=ca-bundle \
    if [ -s /run/secrets/ca-bundle ]; then export PIP_CERT=/run/secrets/ca-bundle; fi \
    && /opt/session-operator/bin/pip install --no-deps --no-build-isolation .
# The installers are not needed at run time.
RUN /opt/session-operator/bin/python -m pip uninstall --yes --quiet pip setuptools

FROM ${BASE_IMAGE}
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
