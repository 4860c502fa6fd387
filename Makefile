# session-lease-operator — developer entry points. `make help` lists them.

PYTHON      ?= python3
VENV        ?= .venv
BIN          = $(VENV)/bin
# Kubernetes version of the local control plane; empty = the version pinned in
# hack/controlplane/kubernetes/go.mod. Example: make test KUBE_VERSION=v1.36.3
KUBE_VERSION ?=
export KUBE_VERSION

PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install the package with test and lint tools

.PHONY: controlplane
controlplane: install ## build etcd, kube-apiserver, kube-controller-manager, kubectl into the cache (once)
	$(BIN)/python -m session_operator.devcluster build

.PHONY: run
run: controlplane ## run the operator; without KUBECONFIG on a local control plane
	$(BIN)/python -m session_operator.devcluster run

.PHONY: cluster
cluster: controlplane ## start only the local control plane (CRDs installed) and wait
	$(BIN)/python -m session_operator.devcluster up

.PHONY: test
test: test-unit test-e2e ## install everything needed, then run unit and e2e tests

.PHONY: test-unit
test-unit: install ## fast tests of the pure logic, no server
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: controlplane ## tests against the real local control plane
	$(BIN)/python -m pytest tests/e2e $(PYTEST_ARGS)

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check operator tests
	$(BIN)/ruff format --check operator tests
	$(BIN)/mypy

.PHONY: clean
clean: ## remove the virtualenv and caches (not the control-plane binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
