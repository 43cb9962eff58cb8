# es-serverless: `make up` runs the platform here, `make test` runs the suite.
# Both set up what they need (virtualenv, wheels, engine jars) once, idempotently.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

KUSTOMIZE_VERSION := v5.5.0
KUSTOMIZE := $(HOME)/.cache/es-serverless/tools/kustomize-$(KUSTOMIZE_VERSION)/kustomize

.PHONY: setup up down test bench clean test-tools kustomize kube-tools

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

setup: $(STAMP)
	$(PY) -m devrun setup

up: setup
	$(PY) -m devrun up

down:
	$(PY) -m devrun down

# promtool (Debian package prometheus) checks deploy/monitoring in the tests; chromium (Debian's)
# runs the console's browser test
test-tools:
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing promtool (Debian package prometheus)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool not found: install the Debian package prometheus (sudo apt install prometheus)"; exit 2; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing chromium (Debian package; the console's browser test drives it)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null \
	      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium >/dev/null; }; \
	  else echo "chromium not found: install the Debian package chromium (sudo apt install chromium)"; exit 2; fi; }

# kustomize, built once from the Go module proxy, renders deploy/kubernetes in the tests
$(KUSTOMIZE):
	@command -v go >/dev/null || { echo "kustomize: Go is needed to build it (go install)"; exit 2; }
	GOBIN=$(dir $(KUSTOMIZE)) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

kustomize: $(KUSTOMIZE)

# a real Kubernetes control plane for the driver's tests (etcd, kube-apiserver, controller
# manager, scheduler, kwok), built once from the Go module proxy: ~16 min cold on 2 cores
kube-tools:
	@bash deploy/tools/build.sh

test: setup test-tools $(KUSTOMIZE) kube-tools
	KUSTOMIZE=$(KUSTOMIZE) $(PY) -m pytest -q --durations=15

bench: setup
	$(PY) bench/run_all.py

clean: down
	rm -rf .state
