#!/bin/sh
# Placeholder sources for every crate under crates/, from its Cargo.toml alone, so that
# `cargo build --workspace` compiles all third-party dependencies (build-dependencies too) before
# our own code is copied in: deploy/Dockerfile's cached dependency layer.
#
# For each crate: an empty src/lib.rs, `fn main() {}` for every declared [lib], [[bin]], [[bench]],
# [[test]] and [[example]] target (at its `path`, or cargo's default for its `name`), and a no-op build.rs when
# the crate has [build-dependencies]. Run from the workspace root: scripts/docker-dummy-sources.sh
set -eu

for manifest in crates/*/Cargo.toml tests/Cargo.toml; do
    dir=$(dirname "$manifest")
    mkdir -p "$dir/src"
    : > "$dir/src/lib.rs"
    # Print one path per declared target, then `BUILD` if the crate has build-dependencies.
    awk '
        function flush() {
            if (kind == "") return
            if (path == "") {
                if (kind == "lib")     path = "src/lib.rs"
                if (kind == "bin")     path = (name == "" ? "src/main.rs" : "src/bin/" name ".rs")
                if (kind == "bench")   path = "benches/" name ".rs"
                if (kind == "test")    path = "tests/" name ".rs"
                if (kind == "example") path = "examples/" name ".rs"
            }
            print path
            kind = ""; name = ""; path = ""
        }
        /^[[:space:]]*\[/ {
            flush()
            if ($0 ~ /^[[:space:]]*\[lib\]/) kind = "lib"
            if ($0 ~ /^[[:space:]]*\[\[(bin|bench|test|example)\]\]/) {
                kind = $0; gsub(/[][[:space:]]/, "", kind)
            }
            if ($0 ~ /^[[:space:]]*\[build-dependencies\]/) print "BUILD"
            next
        }
        kind != "" && /^[[:space:]]*name[[:space:]]*=/ { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*/, "", v); name = v }
        kind != "" && /^[[:space:]]*path[[:space:]]*=/ { v = $0; sub(/^[^=]*=[[:space:]]*"/, "", v); sub(/".*/, "", v); path = v }
        END { flush() }
    ' "$manifest" | while read -r target; do
        if [ "$target" = BUILD ]; then
            echo 'fn main() {}' > "$dir/build.rs"
        else
            mkdir -p "$dir/$(dirname "$target")"
            echo 'fn main() {}' > "$dir/$target"
        fi
    done
done
