#!/usr/bin/env bash
# Fails if the contracts under proto/ break wire or source compatibility (buf breaking, FILE
# rules from buf.yaml) with the contracts they replace. See proto/README.md for the policy.
#
# What is compared with what:
# - on a branch: the working tree against the merge-base with main (what the branch changed,
#   not what main changed since the branch forked);
# - on main itself (HEAD is main's tip, as in CI on a fresh clone of main): HEAD against its
#   first parent, HEAD~1, so a breaking change that reached main still fails the build.
# main is the local branch if there is one, else origin/main (fetched if missing).
# The baseline is exported with `git archive`, so this works in worktrees and fresh clones.
set -euo pipefail
cd "$(dirname "$0")/.."

make --no-print-directory tools >/dev/null

main_ref=""
if git rev-parse --verify --quiet refs/heads/main >/dev/null; then
	main_ref=refs/heads/main
elif git rev-parse --verify --quiet refs/remotes/origin/main >/dev/null; then
	main_ref=refs/remotes/origin/main
elif git remote get-url origin >/dev/null 2>&1 && git fetch --quiet origin main:refs/remotes/origin/main 2>/dev/null; then
	main_ref=refs/remotes/origin/main
fi

head=$(git rev-parse HEAD)
if [ -z "$main_ref" ] || [ "$(git rev-parse "$main_ref")" = "$head" ]; then
	# On main (or no main to be found: compare with the previous commit, which is all there is).
	if ! git rev-parse --verify --quiet "HEAD~1^{commit}" >/dev/null; then
		if [ "$(git rev-parse --is-shallow-repository)" = true ]; then
			git fetch --quiet --deepen=1 origin 2>/dev/null || true
		fi
	fi
	if ! base=$(git rev-parse --verify --quiet "HEAD~1^{commit}"); then
		echo "proto-breaking: HEAD is the first commit; nothing to compare with"
		exit 0
	fi
	what="HEAD~1 ($(git log -1 --format='%h %s' "$base"))"
else
	base=$(git merge-base HEAD "$main_ref")
	what="the merge-base with main ($(git log -1 --format='%h %s' "$base"))"
fi

if ! git cat-file -e "$base:proto" 2>/dev/null; then
	echo "proto-breaking: $what has no proto/; nothing to compare with"
	exit 0
fi
against=$(mktemp -d)
trap 'rm -rf "$against"' EXIT
git archive "$base" proto buf.yaml | tar -x -C "$against"
echo "proto-breaking: comparing proto/ with $what"
npx --no-install buf breaking --against "$against"
echo "proto-breaking: no breaking change"
