#!/usr/bin/env bash
# Checks deploy/ without a Docker engine (none is needed):
#   - shellcheck on the scripts that build and check it,
#   - hadolint on deploy/Dockerfile (any finding fails), and every crate's manifest in its
#     dependency layer,
#   - `docker-compose config` on deploy/compose.yaml: parses it, resolves anchors and merges, and
#     validates the result against the Compose specification's schema,
#   - the OpenTelemetry collector config: every pipeline names receivers, processors and exporters
#     that are defined, and every defined one is used.
# What this cannot check: that the image builds and the stack starts (that needs an engine).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deploy-tools.sh compose

echo "shellcheck scripts/{deploy-tools,deploy-lint,helm-check,docker-dummy-sources}.sh"
.venv/bin/shellcheck scripts/deploy-tools.sh scripts/deploy-lint.sh scripts/helm-check.sh \
    scripts/docker-dummy-sources.sh

echo "hadolint deploy/Dockerfile"
.venv/bin/hadolint --failure-threshold style deploy/Dockerfile

# The dependency layer copies each crate's manifest by name: a new crate needs its line.
for manifest in crates/*/Cargo.toml tests/Cargo.toml; do
    if ! grep -qx "COPY $manifest $manifest" deploy/Dockerfile; then
        echo "deploy/Dockerfile: add 'COPY $manifest $manifest' to the dependency layer" >&2
        exit 1
    fi
done

echo "docker-compose config deploy/compose.yaml"
.venv/bin/docker-compose -f deploy/compose.yaml config --quiet

echo "otel-collector config deploy/otel-collector.yaml"
.venv/bin/python - deploy/otel-collector.yaml <<'PY'
import sys
import yaml

path = sys.argv[1]
with open(path) as f:
    config = yaml.safe_load(f)
errors = []
service = config.get("service") or {}
pipelines = service.get("pipelines") or {}
if not pipelines:
    errors.append("service.pipelines is empty")
used = {"receivers": set(), "processors": set(), "exporters": set()}
for name, pipeline in pipelines.items():
    if name.split("/")[0] not in ("traces", "metrics", "logs"):
        errors.append(f"pipeline {name}: not traces, metrics or logs")
    for kind in ("receivers", "exporters"):
        if not pipeline.get(kind):
            errors.append(f"pipeline {name}: no {kind}")
    for kind in used:
        for component in pipeline.get(kind) or []:
            used[kind].add(component)
            if component not in (config.get(kind) or {}):
                errors.append(f"pipeline {name}: {kind[:-1]} {component} is not defined")
for kind, names in used.items():
    for component in config.get(kind) or {}:
        if component not in names:
            errors.append(f"{kind[:-1]} {component} is defined but no pipeline uses it")
for extension in service.get("extensions") or []:
    if extension not in (config.get("extensions") or {}):
        errors.append(f"extension {extension} is not defined")
for error in errors:
    print(f"{path}: {error}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
echo "deploy/ ok"
