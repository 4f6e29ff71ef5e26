# The few verbs a newcomer needs. Every target installs what it uses (pip into .venv; apt as root).
# `make serve` and `make test` are the two set-up commands of the README.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check
STAMPS := .stamps
HOST   ?= 127.0.0.1
PORT   ?= 8000
APT    := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends

# Debian packages: the parallel corpora (make data) and the test tools (promtool, Chromium).
DATA_APT_PACKAGES := trans-de-en libreoffice-help-en-us libreoffice-help-de libreoffice-l10n-de
TEST_APT_PACKAGES := prometheus chromium

.PHONY: serve test lint data train eval export bench loadtest profile image deploy-check clean help

help:
	@echo "make serve         install the serving extra and serve the shipped model on $(HOST):$(PORT)"
	@echo "make test          install everything the tests use and run the whole suite"
	@echo "make data          build the parallel corpus and the tokenizer (apt + parsing, ~2 min)"
	@echo "make train         train attention + none models, evaluate, export to model_store/"
	@echo "make bench         side-by-side benchmark (naive / off / static / continuous / int8)"
	@echo "make loadtest      Locust step load against a real server process"
	@echo "make profile       py-spy profile of the service under load (PROFILE_ARGS='--config int8')"
	@echo "make deploy-check  render and validate the Kubernetes manifests, alerts and Dockerfiles"
	@echo "make image         build and smoke-test the CPU image with podman"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip

$(STAMPS)/serve: pyproject.toml | $(PY)
	$(PIP) -e '.[serve]'
	@mkdir -p $(STAMPS) && touch $@

# torch is pinned to the CPU build on local disk; the tests train a tiny model with it.
$(STAMPS)/dev: pyproject.toml | $(PY)
	$(PIP) -e '.[serve,train,loadtest,dev]'
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/apt-test:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && $(APT) -qq $(TEST_APT_PACKAGES) >/dev/null; \
	 else echo "not root: expecting $(TEST_APT_PACKAGES) to be installed already"; fi
	@mkdir -p $(STAMPS) && touch $@

# promtool, kubernetes-validate, hadolint (in .venv) and checkov (own venv: it pins old networkx).
$(STAMPS)/deploy-tools: deploy/install-tools.sh | $(STAMPS)/dev
	deploy/install-tools.sh
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/apt-data:
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && $(APT) -qq $(DATA_APT_PACKAGES) >/dev/null; \
	 else echo "not root: expecting $(DATA_APT_PACKAGES) to be installed already"; fi
	@mkdir -p $(STAMPS) && touch $@

serve: $(STAMPS)/serve
	TRANSLATOR_HOST=$(HOST) TRANSLATOR_PORT=$(PORT) $(PY) -m service

test: $(STAMPS)/dev $(STAMPS)/apt-test $(STAMPS)/deploy-tools
	$(PY) -m ruff check model_store service training tests loadtest
	$(VENV)/bin/lint-imports
	$(PY) -m pytest

lint: $(STAMPS)/dev
	$(PY) -m ruff check model_store service training tests loadtest
	$(VENV)/bin/lint-imports
	$(PY) -m mypy

data: $(STAMPS)/dev $(STAMPS)/apt-data
	$(PY) -m training.data.build --out data/corpus
	$(PY) -m training.tokenizer --train data/corpus/train.tsv --out data/tokenizer --vocab-size 8000

# Resumable: re-running continues from runs/*/last.pt (mid-epoch too, on the batches an uninterrupted run
# would train). MINUTES bounds each training run: a re-run trains up to MINUTES more (last.pt keeps the total).
MINUTES ?= 80
PRESET  ?= cpu
# The next free version of en-de: publishing never overwrites a shipped artifact.
VERSION ?= $(shell ls model_store/en-de 2>/dev/null | grep -E '^[0-9]+$$' | sort -n | tail -1 | awk '{print $$1 + 1}')
eval: $(STAMPS)/dev
	$(PY) -m training.evaluate --checkpoint runs/en-de/best.pt --none-checkpoint runs/en-de-none/best.pt \
	    --corpus data/corpus --out runs/en-de/eval --beam 5

train: $(STAMPS)/dev
	@test -f data/tokenizer/spm.model || $(MAKE) data
	$(PY) -m training.cli train --preset $(PRESET) --attention luong_general --out runs/en-de --minutes $(MINUTES)
	$(PY) -m training.cli train --preset $(PRESET) --attention none --out runs/en-de-none --minutes $(MINUTES)
	$(MAKE) export

export: $(STAMPS)/dev
	$(PY) -m training.cli export --checkpoint runs/en-de/best.pt --none-checkpoint runs/en-de-none/best.pt \
	    --store model_store --name en-de --version $(VERSION)

# Needs the shipped model in model_store/; the naive PyTorch baseline uses runs/en-de/best.pt if it exists,
# else the artifact's own fp32 weights (BENCH_ARGS="--checkpoint X.pt" to pick another checkpoint).
BENCH_ARGS ?=
bench: $(STAMPS)/dev
	$(PY) -m loadtest.bench $(BENCH_ARGS)

LOADTEST_ARGS ?=
loadtest: $(STAMPS)/dev
	$(PY) -m loadtest.run_loadtest $(LOADTEST_ARGS)

PROFILE_ARGS ?=
profile: $(STAMPS)/dev
	$(PY) -m loadtest.profile $(PROFILE_ARGS)

deploy-check: $(STAMPS)/deploy-tools
	deploy/check.sh

image: $(STAMPS)/dev
	deploy/install-tools.sh --image
	deploy/build-image.sh

clean:
	rm -rf $(STAMPS) .pytest_cache .mypy_cache .ruff_cache
