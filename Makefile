# One command runner for people, pre-commit hooks and CI alike.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help bootstrap deploy-tools bench-tools dev test check lint format typecheck pytest faults bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

bootstrap:  ## install the virtualenv, dependencies, redis-server and the Kafka jars
	@./scripts/bootstrap

deploy-tools: bootstrap  ## kustomize and KEDA's schema, for the deployment tests
	@./scripts/deploy-tools

bench-tools:  ## wrk and a C compiler, for the benchmarks
	@./scripts/bench-tools

dev: bootstrap  ## run the whole tracker on this machine with its own Kafka and Redis
	$(BIN)/wawindow dev

test: bootstrap deploy-tools check pytest  ## everything CI runs: lint, types, the test suite

check: lint typecheck  ## ruff and mypy --strict

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/hadolint deploy/Dockerfile

format:  ## rewrite the code in the project's format
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck:
	$(BIN)/mypy

pytest:
	$(BIN)/pytest

faults: bootstrap deploy-tools  ## the fault, fuzz and durability tests, with five times the examples
	HYPOTHESIS_PROFILE=dev $(BIN)/pytest -m "" tests/test_faults.py tests/test_durability.py \
		tests/test_supervision.py tests/test_poison.py tests/test_rules_properties.py

bench: bootstrap bench-tools  ## run every benchmark (results in bench/results/; the peers go into .venv-peers*)
	$(BIN)/python bench/webhook_throughput.py
	$(BIN)/python bench/send_check.py
	$(BIN)/python bench/worker_throughput.py
	$(BIN)/python bench/compiled.py

clean:  ## stop local services started with `wawindow services up` and remove the virtualenv
	-$(BIN)/wawindow services down
	rm -rf $(VENV)
