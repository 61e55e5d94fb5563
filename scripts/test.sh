#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine as root with a Rust toolchain.
# Installs what the tests need (Debian packages, the Python client), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
if ((${#need_apt[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# kubectl: the e2e tests use the bundled clients when present and skip only those checks
# that need a client this machine lacks (they say so in the output).
export SKIFF_TEST_KUBECTL_DIR="${SKIFF_TEST_KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}"

cargo build -p skiff
cargo test --workspace --no-fail-fast 2>&1
