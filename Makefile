# Music microservices workshop. `make` (or `make help`) lists every target.
#
# Ports and address can be given as make variables or environment variables, e.g.
#   make serve HTTP_PORT=9080 GRPC_PORT=9081 METRICS_PORT=9082
#   UI_PORT=7861 make app

SHELL := /bin/bash
.DEFAULT_GOAL := help
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TUNESMITH := $(PY) -m tunesmith  # the `tunesmith` command, run by the environment's Python
STAMP := $(VENV)/.installed

HOST ?= 127.0.0.1
HTTP_PORT ?= 8080
GRPC_PORT ?= 8081
METRICS_PORT ?= 8082
PROMETHEUS_PORT ?= 9090
UI_PORT ?= 7860
export HOST HTTP_PORT GRPC_PORT METRICS_PORT UI_PORT

PLATFORM := build/platform/models
SERVER_URL := http://$(HOST):$(HTTP_PORT)
PORTS := --host $(HOST) --http-port $(HTTP_PORT) --grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT)

.PHONY: help setup serve app up stop test test-fast data train train-v2 train-classifier eval bench \
        stage-1 stage-2 stage-3 solution platform clean

help: ## List every target (this text)
	@echo "Music microservices workshop: make <target> [HTTP_PORT=8080 GRPC_PORT=8081 METRICS_PORT=8082 UI_PORT=7860 HOST=127.0.0.1]"
	@echo
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-17s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 10) <= v <= (3, 12) else "Python 3.10 to 3.12 is needed; " + sys.version.split()[0] + " found. Try make setup PYTHON=python3.11")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@echo "Extracting the ABC corpus from music21 into data/abc/ (once, about a minute; make data does it again)"
	$(TUNESMITH) data > /dev/null
	$(PY) -m tunesmith.generator.critic  # the critic's index of the corpus, so no critic parses it at load
	touch $(STAMP)

setup: $(STAMP) ## Create .venv, install everything, extract the corpus (runs once; again when requirements change)

serve: setup ## Run MLServer on your models/ in this terminal (Ctrl-C stops it)
	$(TUNESMITH) serve --models models --name serve $(PORTS)

app: setup ## Run the Gradio UI against the server at HOST:HTTP_PORT (SELDON=1 for make gateway)
	TUNESMITH_SERVER_URL=$(SERVER_URL) $(if $(SELDON),TUNESMITH_SELDON=1) $(PY) -m app --host $(HOST) --port $(UI_PORT)

platform: setup ## Build the finished platform (every stage's models) into build/platform/models
	$(TUNESMITH) stage solution --into $(PLATFORM) --no-backup

up: platform ## Run the finished platform: server + UI (your models/ is not touched)
	$(TUNESMITH) up --models $(PLATFORM) --name platform $(PORTS) --ui-port $(UI_PORT)

.PHONY: gateway
gateway: setup ## Serve the Seldon manifests in manifests/: models and pipelines at HTTP_PORT and GRPC_PORT
	$(TUNESMITH) gateway --manifests manifests --models models $(PORTS)

.PHONY: prometheus
prometheus: setup ## Run Prometheus on the running platform (monitoring/: scrape config, alerts) at PROMETHEUS_PORT (9090)
	$(PY) -m tunesmith.monitoring.prometheus --host $(HOST) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT) --port $(PROMETHEUS_PORT)

# Stage 3 on a cluster (README, "Stage 3 on a cluster"): the same manifests, applied with kubectl.
#   make image IMAGE=ghcr.io/you/tunesmith-mlserver:0.1.0
#   make deploy MODELS_URI=gs://your-bucket/models NAMESPACE=seldon-mesh IMAGE=ghcr.io/you/tunesmith-mlserver:0.1.0
# MODELS_URI and IMAGE are passed on only when given; the manifests' own values stay otherwise.
.PHONY: image deploy undeploy
IMAGE ?= tunesmith-mlserver:0.1.0
NAMESPACE ?= seldon-mesh
DEPLOY_FLAGS = --manifests manifests --namespace $(NAMESPACE) $(if $(MODELS_URI),--models-uri $(MODELS_URI)) \
               $(if $(filter command line environment,$(origin IMAGE)),--image $(IMAGE))

image: ## Build the MLServer image for a cluster from deploy/Dockerfile (IMAGE=tunesmith-mlserver:0.1.0)
	@command -v docker >/dev/null 2>&1 || { echo "make image needs Docker, which is not installed here (https://docs.docker.com/get-docker/). Or build on a machine that has it: docker build -f deploy/Dockerfile -t $(IMAGE) ." >&2; exit 1; }
	docker info >/dev/null 2>&1 || { echo "docker is installed but no Docker engine answers: start Docker Desktop (or the docker service), then make image again." >&2; exit 1; }
	echo "DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t $(IMAGE) ."
	DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile -t $(IMAGE) .
	echo "built $(IMAGE). Push it where the cluster pulls from (docker push $(IMAGE)), or for kind: kind load docker-image $(IMAGE)"

deploy: setup ## Apply manifests/ to kubectl's cluster: MODELS_URI=gs://bucket/models NAMESPACE=seldon-mesh IMAGE=...
	$(TUNESMITH) deploy $(DEPLOY_FLAGS)

undeploy: setup ## Delete what make deploy applied, in reverse order (same NAMESPACE)
	$(TUNESMITH) undeploy --manifests manifests --namespace $(NAMESPACE)

stop: ## Stop every server started from this repository
	@$(TUNESMITH) stop

test: setup ## Run the whole test suite (unit, runtimes, real server, notebooks, UI)
	$(PY) -m pytest

test-fast: setup ## Run only the quick tests (no server, notebooks or browser)
	$(PY) -m pytest -m "not server and not notebooks and not ui and not browser"

data: setup ## Extract and split the ABC tunes from music21's corpus into data/abc/, and index them for the critic
	$(TUNESMITH) data
	$(PY) -m tunesmith.generator.critic

train: setup ## Retrain the tune generator into checkpoints/tune-generator (about 25 min on 2 cores)
	$(TUNESMITH) train generator

train-v2: setup ## Retrain generator v2 (dance collections only) into checkpoints/tune-generator-v2
	$(TUNESMITH) train generator --out checkpoints/tune-generator-v2 --steps 800 --augment 4 \
	    --collections oneills1850,ryansMammoth,airdsAirs

train-classifier: setup ## Retrain the style classifier into checkpoints/style-classifier (renders audio first)
	$(TUNESMITH) train style

eval: setup ## Print quality tables: both generator versions, the transcriber, the style classifier, generated vs real tunes (plots in build/realism/), drift false alarms and time to alarm
	$(TUNESMITH) eval

.PHONY: votes
votes: setup ## Print the listening test's statistics and write every vote to build/votes.csv
	$(PY) -m tunesmith.listening.votes --csv build/votes.csv

.PHONY: timings
timings: setup ## Print how long each notebook and stage takes a learner: core path and optional deep dives
	$(TUNESMITH) timings

bench: setup ## Print decode-loop, cold-start, latency (in-process vs REST vs gRPC), batching, worker, gateway, replica and mirror tables
	$(TUNESMITH) bench

stage-1: setup ## Reset models/ to the start of stage 1 (your models/ is backed up first)
	$(TUNESMITH) stage stage-1 --into models

stage-2: setup ## Reset models/ to the start of stage 2 (everything stage 1 builds)
	$(TUNESMITH) stage stage-2 --into models

stage-3: setup ## Reset models/ to the start of stage 3 (everything stages 1 and 2 build)
	$(TUNESMITH) stage stage-3 --into models

solution: setup ## Put the finished platform in models/ (your models/ is backed up first)
	$(TUNESMITH) stage solution --into models

clean: ## Remove generated files (.run, build, caches); keeps .venv, models/ and backups/
	-$(TUNESMITH) stop 2>/dev/null
	rm -rf .run build .pytest_cache data/abc
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +
