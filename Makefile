# The two commands a new user needs: `make dev` runs the whole system, `make test` the tests.
# Both create the virtual environment from uv.lock when it is missing or stale.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

RUN_DIR := $(CURDIR)/.run
# Raise when coverage rises; never lower it.
COVERAGE_FLOOR := 95
# Shared by the processes `make dev` starts, so /metrics adds up every API worker.
METRICS_DIR := $(RUN_DIR)/metrics

# Settings default to production. These targets are for a developer's machine: everything they
# run gets ENVIRONMENT=development, unless the environment or .env names another.
ifeq ($(origin ENVIRONMENT)$(shell grep -s '^ENVIRONMENT=' .env),undefined)
export ENVIRONMENT := development
endif

.PHONY: help venv dev services migrate console browser test lint format bench clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

.venv/.synced: pyproject.toml uv.lock
	@command -v uv >/dev/null || { echo "uv not found: installing it with pip"; python3 -m pip install --quiet uv; }
	uv sync --frozen
	@touch $@

venv: .venv/.synced ## Create or update the virtual environment from uv.lock

# The TypeScript client (clients/typescript) and the web console built on it (console/), which
# the API serves at /console. Rebuilt when their sources or lock files change.
NPM := npm --no-audit --no-fund
CLIENT_SOURCES := $(shell find clients/typescript/src -type f 2>/dev/null) \
	clients/typescript/package.json clients/typescript/tsconfig.json
CONSOLE_SOURCES := $(shell find console/src -type f 2>/dev/null) console/index.html \
	console/package.json console/tsconfig.json console/vite.config.ts
NODE_HINT := Node.js 20 or newer with npm is needed to build the console: on Debian \
	`apt-get install nodejs npm`, elsewhere https://nodejs.org

clients/typescript/node_modules/.package-lock.json: clients/typescript/package-lock.json
	@command -v npm >/dev/null || { echo "$(NODE_HINT)"; exit 1; }
	cd clients/typescript && $(NPM) ci

clients/typescript/dist/index.js: clients/typescript/node_modules/.package-lock.json $(CLIENT_SOURCES)
	cd clients/typescript && $(NPM) run build

console/node_modules/.package-lock.json: console/package-lock.json clients/typescript/dist/index.js
	cd console && $(NPM) ci

console/dist/index.html: console/node_modules/.package-lock.json clients/typescript/dist/index.js $(CONSOLE_SOURCES)
	cd console && $(NPM) run build

console: console/dist/index.html ## Build the TypeScript client and the web console (/console)

# The browser tests drive Debian's Chromium (or CHROMIUM_PATH).
CHROMIUM ?= $(or $(CHROMIUM_PATH),/usr/bin/chromium)
browser:
	@test -x "$(CHROMIUM)" || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing Chromium for the browser tests"; \
			apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; \
		else \
			echo "Chromium is needed for the browser tests: on Debian \`sudo apt-get install chromium\`, or set CHROMIUM_PATH"; exit 1; \
		fi; }

services: venv ## Check that PostgreSQL, Redis and the Celery broker are reachable
	@uv run --frozen switchboard services check

migrate: services ## Create the database if needed and apply migrations
	@uv run --frozen switchboard db ensure
	uv run --frozen alembic upgrade head

dev: migrate console ## Run API, workers, beat and Flower together (Ctrl-C stops all)
	@uv run --frozen switchboard auth keys rotate
	@rm -rf "$(METRICS_DIR)" && mkdir -p "$(METRICS_DIR)"
	@uv run --frozen switchboard config urls
	PROMETHEUS_MULTIPROC_DIR="$(METRICS_DIR)" uv run --frozen honcho start --procfile Procfile

test: services console browser ## Run the test suite against real PostgreSQL, Redis and Celery workers
	uv run --frozen pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)
	@for package in auth identity; do \
		uv run --frozen coverage report --include="switchboard/$$package/*" --fail-under=90 \
			>/dev/null || { echo "coverage of switchboard/$$package/ is under 90%"; exit 1; }; \
	done

lint: venv ## ruff, formatting, mypy and the import contract
	uv run --frozen ruff check .
	uv run --frozen ruff format --check .
	uv run --frozen mypy
	uv run --frozen lint-imports

format: venv ## Apply ruff's fixes and formatting
	uv run --frozen ruff check --fix .
	uv run --frozen ruff format .

bench: services ## Run the benchmarks under bench/ and print their figures
	@for b in bench/*_bench.py; do echo "== $$b"; uv run --frozen python "$$b"; done

clean: ## Remove caches and run files
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache htmlcov .coverage .coverage.*
	rm -rf console/dist clients/typescript/dist clients/typescript/dist-test
