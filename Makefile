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
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
		'{ name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1) } \
		END { for (i = 1; i <= NR; i++) printf "  make %-" width "s  %s\n", name[i], text[i] }'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@

.PHONY: install
install: $(VENV)/.installed ## create .venv and install the package with test and lint tools

.PHONY: controlplane
controlplane: install ## build etcd, kube-apiserver, kube-controller-manager, kubectl into the cache (once)
	$(BIN)/python -m harness build

# NODE=1: the local control plane gets a node too (kube-scheduler, kubelet, containerd,
# a Pod network; as root; docs/node.md), so a Session's Pod really runs. `make image` first
# puts the operator image on it.
NODE ?=
NODE_FLAG = $(if $(filter-out 0 false no,$(NODE)),--node)

.PHONY: run
run: prerequisites controlplane ## run the operator; without KUBECONFIG on a local control plane (NODE=1: and a node)
	$(BIN)/python -m harness run $(NODE_FLAG)

.PHONY: cluster
cluster: controlplane ## start only the local control plane (CRDs installed) and wait (NODE=1: and a node)
	$(BIN)/python -m harness up $(NODE_FLAG)

.PHONY: node
node: install ## install the node's Debian packages, build kube-scheduler, kubelet, kube-proxy (once)
	$(BIN)/python -m harness build node

# --- Install: the chart, manifests/, kind (helm and kind are built like the control plane,
# from the wrapper modules in hack/tools/, into the same binary cache).
HARNESS            = $(BIN)/python -m harness
HELM               = $(shell $(HARNESS) which helm)
KIND               = $(shell $(HARNESS) which kind)
KUBECTL            = $(shell $(HARNESS) which kubectl)
CHART              = helm/session-lease-operator
KIND_CLUSTER      ?= session-lease-operator
# KIND_NODE_IMAGE: empty = kind's default (kindest/node, pulled from docker.io); or the
# image `make kind-node-image` builds here without a registry (KIND_LOCAL_NODE_IMAGE):
# it has no kindnetd but a bridge CNI configuration of its own, so one node (docs/install.md).
KIND_LOCAL_NODE_IMAGE = session-lease-operator-kind-node:v1.37.2
KIND_NODE_IMAGE   ?=
KIND_LOCAL         = $(filter $(KIND_LOCAL_NODE_IMAGE),$(KIND_NODE_IMAGE))
KIND_WORKERS      ?= $(if $(KIND_LOCAL),0,1)
KIND_CONFIG        = hack/kind/generated/$(KIND_CLUSTER).yaml
IMAGE_REPO        ?= session-lease-operator
IMAGE_TAG         ?= dev
RELEASE           ?= session-lease-operator
RELEASE_NAMESPACE ?= session-lease-operator
NEED_DOCKER        = @docker info >/dev/null 2>&1 || { echo "$@: needs a running Docker engine (kind runs its nodes as containers)" >&2; exit 1; }

.PHONY: helm
helm: install ## build helm into the binary cache (once)
	$(HARNESS) build helm

.PHONY: kind
kind: install ## build kind into the binary cache (once)
	$(HARNESS) build kind

.PHONY: prometheus
prometheus: install ## build prometheus and promtool into the binary cache (once)
	$(HARNESS) build prometheus

.PHONY: manifests
manifests: helm ## render the chart into manifests/, copy crds/ into the chart
	$(BIN)/python -m harness.manifests --helm $(HELM)

.PHONY: kind-up
kind-up: kind ## create a kind cluster, KIND_CLUSTER (needs Docker)
	$(NEED_DOCKER)
	$(BIN)/python hack/kind/kind_config.py $(KIND_CONFIG) --name $(KIND_CLUSTER) \
		--workers $(KIND_WORKERS) --node-image "$(KIND_NODE_IMAGE)" $(if $(KIND_LOCAL),--no-default-cni) \
		$$(docker info --format '{{.CgroupVersion}}' | grep -qx 1 && echo --cgroup-v1)
	$(KIND) get clusters | grep -qx $(KIND_CLUSTER) || \
		$(KIND) create cluster --name $(KIND_CLUSTER) --config $(KIND_CONFIG) --wait 120s

.PHONY: kind-down
kind-down: kind ## delete the kind cluster KIND_CLUSTER
	$(KIND) delete cluster --name $(KIND_CLUSTER)

# Everything from the Go module proxy and the Debian mirror, on the Docker engine in use
# (root, debootstrap, gcc; ~10 min cold): hack/kind/node_image.py.
.PHONY: kind-node-image
kind-node-image: kind controlplane node ## build KIND_LOCAL_NODE_IMAGE on the Docker engine, no registry (as root)
	$(NEED_DOCKER)
	$(BIN)/python hack/kind/node_image.py --tag $(KIND_LOCAL_NODE_IMAGE)

# --- The operator image, built on a Docker engine the harness starts for it (docs/image.md).
# BASE_IMAGE: empty = a Debian bookworm base made here with debootstrap, pinned by
# hack/image/debian-base.lock and cached; or a registry image, e.g. python:3.11-slim.
# IMAGE_ARCHIVE: also write the image there as a tarball (docker save).
BASE_IMAGE    ?=
IMAGE_ARCHIVE ?=

.PHONY: engine
engine: install ## install the Docker engine and debootstrap (Debian packages; as root) if missing
	$(HARNESS) build engine

IMAGE_ARGS     = --tag $(IMAGE_REPO):$(IMAGE_TAG) --base-image "$(BASE_IMAGE)" \
	$(if $(IMAGE_ARCHIVE),--save $(IMAGE_ARCHIVE))

.PHONY: image
image: engine ## build the operator image IMAGE_REPO:IMAGE_TAG from the Dockerfile (BASE_IMAGE)
	$(HARNESS) image $(IMAGE_ARGS)

.PHONY: base-lock
base-lock: engine ## make the image's Debian base anew; record its versions in hack/image/
	$(HARNESS) base-lock

# kind runs its nodes on the machine's own Docker engine; the image comes as a tarball.
deploy: IMAGE_ARCHIVE = build/$(IMAGE_REPO)-$(IMAGE_TAG).tar

.PHONY: deploy
deploy: helm kind controlplane image ## build the image, load it into kind, install the chart there
	$(NEED_DOCKER)
	$(KIND) load image-archive $(IMAGE_ARCHIVE) --name $(KIND_CLUSTER)
	$(KUBECTL) --context kind-$(KIND_CLUSTER) apply --server-side -f crds/
	$(HELM) upgrade --install $(RELEASE) $(CHART) --kube-context kind-$(KIND_CLUSTER) \
		--namespace $(RELEASE_NAMESPACE) --create-namespace \
		--set image.repository=$(IMAGE_REPO) --set image.tag=$(IMAGE_TAG) \
		--set image.pullPolicy=Never --wait --timeout 5m

# `make test` installs and builds everything every tier needs in one visible step (`prepare`,
# harness/prepare.py) before its first test; `make test-unit` and `make test-e2e` prepare
# their own tier, so each passes alone on a fresh machine. The tests run with a PATH of
# their own: .venv/bin, then links to the few machine tools they may run by name
# (hack/check_clean_machine.py lists them), and a guard (tests/conftest.py) fails a test
# that reaches for anything its tier was not given.
TEST_PATH_DIR = $(abspath $(VENV))/test-path
PYTEST        = PATH=$(abspath $(BIN)):$(TEST_PATH_DIR) $(BIN)/python -m pytest
TIERS         = unit e2e
# The e2e tier ends with its slowest tests, so where its time goes is in every log.
E2E_ARGS      = --durations=15

.PHONY: test
test: check-machine prepare ## install and build everything the tests need, then run unit and e2e tests
	$(PYTEST) tests/unit $(PYTEST_ARGS)
	$(PYTEST) tests/e2e $(E2E_ARGS) $(PYTEST_ARGS)

.PHONY: prerequisites
prerequisites: ## check the machine: OS and apt, root, Python, Go, make, git (one line each)
	@$(PYTHON) hack/check_prerequisites.py --for $(if $(filter run,$(MAKECMDGOALS)),run,test)

.PHONY: check-machine
check-machine: prerequisites ## refuse hidden install steps: the project in the base Python, unlisted tools
	$(PYTHON) hack/check_clean_machine.py --path-dir $(TEST_PATH_DIR)

# Where a step cannot be taken (not root, no apt-get), it says so in one line and the tests
# that need what it provides skip with that reason (in CI they fail).
.PHONY: prepare
prepare: install ## install the Debian packages, binaries and images the test tiers need, then check them
	$(HARNESS) prepare $(TIERS)

.PHONY: test-unit
test-unit: TIERS = unit
test-unit: check-machine prepare ## fast tests of the pure logic and the chart, no server
	$(PYTEST) tests/unit $(PYTEST_ARGS)

.PHONY: test-e2e
test-e2e: TIERS = e2e
test-e2e: check-machine prepare ## tests against the real local control plane (and a node, as root)
	$(PYTEST) tests/e2e $(E2E_ARGS) $(PYTEST_ARGS)

# The kind tier, opt-in: make kind-node-image kind-up deploy on the Docker engine in
# DOCKER_HOST, or on a kind engine the test starts (harness/kind_engine.py; as root), then a
# Session with a Pod until ready; the cluster is deleted after. Outside `make test`: it
# builds (the node image) and needs more than the tiers' PATH (docs/install.md).
.PHONY: test-kind
test-kind: install ## make kind-up deploy for real on a node image built here (~20 min cold, as root)
	KIND_E2E=1 $(BIN)/python -m pytest -s tests/e2e/test_kind.py $(PYTEST_ARGS)

# Arguments of the benchmark, e.g. BENCH_ARGS=--quick for a smoke run with tiny numbers,
# BENCH_ARGS="--sessions 50000" to add a tier of 50,000 sessions (idle cost, expiry lag).
BENCH_ARGS ?=

.PHONY: bench
bench: install ## measure heartbeats, expiry lag and cost on a local control plane (< 10 min)
	$(BIN)/python -m bench $(BENCH_ARGS)

# Arguments of the runtime profile, e.g. RUNTIME_ARGS="--sessions 5000 --rounds 2".
RUNTIME_ARGS ?=

.PHONY: profile-runtime
profile-runtime: install ## CPU per Session watch event and timer: own watch vs kopf variants (< 10 min)
	$(BIN)/python -m bench.runtime $(RUNTIME_ARGS)

# Faults to inject and their sessions, e.g. CHAOS_ARGS="--faults apiserver-stall --sessions 48".
CHAOS_ARGS ?=

.PHONY: chaos
chaos: controlplane ## inject every fault into a local cluster, check the invariants, print a table
	$(BIN)/python -m chaos $(CHAOS_ARGS)

# How long the soak churns sessions, e.g. make soak DURATION=1h
DURATION ?= 10m

.PHONY: soak
soak: controlplane ## churn sessions for DURATION, check the invariants and the operator's memory
	$(BIN)/python -m chaos --soak $(DURATION)

.PHONY: lock
lock: install ## pin the runtime and build dependencies, with hashes, into requirements.lock (the image installs it)
	$(BIN)/pip-compile --quiet --generate-hashes --strip-extras --allow-unsafe \
		--build-deps-for=wheel --no-emit-index-url --no-emit-find-links \
		-o requirements.lock pyproject.toml

.PHONY: lint
lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check operator tests bench chaos harness hack
	$(BIN)/ruff format --check operator tests bench chaos harness hack
	$(BIN)/mypy
	$(BIN)/mypy --strict bench chaos harness hack/check_clean_machine.py hack/check_prerequisites.py

.PHONY: clean
clean: ## remove the virtualenv and caches (not the control-plane binaries)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
