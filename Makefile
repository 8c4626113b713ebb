# carerecord: every command a person or CI runs. `make help` lists them.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
CARGO ?= cargo
# PostgreSQL for the test suite; unset runs SQLite only. CI sets it (see .ci/run).
TEST_DATABASE_URL ?=
export TEST_DATABASE_URL

.PHONY: help run test console fuzz bench lint conformance supplier-venv fmt clippy proto-lint proto-breaking tools clean-test-dbs helm-check deploy-lint

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

run: ## Start all four services locally on SQLite under ./data (Ctrl-C stops them).
	$(CARGO) run --quiet --bin carerecord -- up --data-dir data

test: ## Run every test: SQLite always, PostgreSQL too when TEST_DATABASE_URL is set.
	@if [ -n "$(TEST_DATABASE_URL)" ]; then echo "testing on SQLite and PostgreSQL"; else echo "testing on SQLite only (set TEST_DATABASE_URL for PostgreSQL)"; fi
	@$(MAKE) --no-print-directory clean-test-dbs
	$(CARGO) test --workspace --no-fail-fast

console: ## Rebuild the web console (web/) into crates/console/assets/ after changing web/ or the contracts.
	scripts/console-build.sh

fuzz: ## Run every fuzz target for FUZZ_SECONDS (default 6) each; fails on any crash (scripts/fuzz.sh).
	scripts/fuzz.sh

bench: ## Benchmarks: quality and speed figures, each against a baseline measured in the same run.
	TEST_DATABASE_URL="$${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}" $(CARGO) bench --workspace

lint: proto-lint ## rustfmt check, clippy with warnings denied, buf lint.
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt: ## Format the Rust code.
	$(CARGO) fmt --all

proto-lint: tools ## Lint the contracts with buf (pinned in package.json).
	npx --no-install buf lint

proto-breaking: tools ## Fail if the contracts break compatibility with main (or, on main, with the previous commit).
	scripts/proto-breaking.sh

conformance: ## Certify a running implementation: make conformance MODULE=records ENDPOINT=http://127.0.0.1:50052
	$(CARGO) run --quiet --bin carerecord -- conformance --module $(MODULE) --endpoint $(ENDPOINT) --report conformance-$(MODULE).md

supplier-venv: ## The Python venv for the independent supplier implementations under tests/suppliers/.
	scripts/supplier-venv.sh

helm-check: ## Lint, render and schema-validate the Helm chart with its three values files.
	scripts/helm-check.sh

deploy-lint: ## hadolint the Dockerfile, validate compose.yaml and the OTel collector config (no engine).
	scripts/deploy-lint.sh

tools: node_modules/.bin/buf ## Install the pinned npm tools (buf).

# buf is pinned exactly in package.json and pins its per-platform binary package itself; no lock file,
# because registry mirrors may not carry every platform's optional package.
node_modules/.bin/buf: package.json
	npm install --no-package-lock --no-audit --no-fund --loglevel=error
	@touch $@

clean-test-dbs: ## Drop per-test PostgreSQL databases older than an hour (never a running suite's).
	@if [ -n "$(TEST_DATABASE_URL)" ] && command -v psql >/dev/null; then \
		for db in $$(psql "$(TEST_DATABASE_URL)" -Atc "SELECT datname FROM pg_database WHERE datname ~ '^carerecord_test_[0-9]+_' AND split_part(datname, '_', 3)::bigint < extract(epoch FROM now()) - 3600"); do \
			psql "$(TEST_DATABASE_URL)" -qc "DROP DATABASE IF EXISTS $$db WITH (FORCE)" >/dev/null || true; \
		done; \
	fi
