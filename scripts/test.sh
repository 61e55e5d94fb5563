#!/usr/bin/env bash
# The whole test suite, runnable on a fresh Debian machine as root with a Rust toolchain.
# Installs what the tests need (Debian packages, the Python client), then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
# Test images for the container runtime are built from Debian's static busybox.
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
# Multi-node network tests build their machines as network namespaces (ip, nsenter).
command -v ip >/dev/null || need_apt+=(iproute2)
command -v nsenter >/dev/null || need_apt+=(util-linux)
# The nftables tests read the ruleset back with `nft` (skiff itself programs netlink).
command -v nft >/dev/null || need_apt+=(nftables)
# The network e2e checks Ingress TLS (SNI, certificate chain) with curl.
command -v curl >/dev/null || need_apt+=(curl)
# Registry pull tests run Debian's registry (distribution) on loopback.
command -v docker-registry >/dev/null || need_apt+=(docker-registry)
# The CNI-mode e2e wires pods with Debian's CNI plugins (bridge, host-local, loopback).
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
if ((${#need_apt[@]})); then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

# The Python `kubernetes` client (from PyPI) for tests/e2e_python.rs. Where the system Python
# refuses a pip install (PEP 668) or has no pip, it goes into a venv under target/, where the
# test looks for it. The test skips, saying why, only if the module still cannot be imported.
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
if ! python3 -c 'import kubernetes' 2>/dev/null && ! target/pyvenv/bin/python -c 'import kubernetes' 2>/dev/null; then
    if ! python3 -m pip install --quiet kubernetes 2>/dev/null; then
        if ! python3 -m venv target/pyvenv 2>/dev/null; then
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv || true
            rm -rf target/pyvenv
            python3 -m venv target/pyvenv || true
        fi
        target/pyvenv/bin/pip install --quiet kubernetes ||
            echo "warning: could not install the Python kubernetes client; tests/e2e_python.rs will skip" >&2
    fi
fi

# kubectl: the e2e tests use the bundled clients when present and skip only those checks
# that need a client this machine lacks (they say so in the output).
export SKIFF_TEST_KUBECTL_DIR="${SKIFF_TEST_KUBECTL_DIR:-/usr/lib/google-cloud-sdk/bin}"

# The containers' cgroups go with them, but the `skiff` parent directories (one per cgroup v1
# hierarchy) stay behind, empty, once the suite ends: remove them afterwards, pass or fail.
# rmdir refuses any cgroup that still has processes or children, so nothing in use goes.
remove_empty_skiff_cgroups() {
    find /sys/fs/cgroup -depth -type d -path '*/skiff*' -exec rmdir {} \; 2>/dev/null || true
}
trap remove_empty_skiff_cgroups EXIT

cargo build -p skiff
cargo test --workspace --no-fail-fast 2>&1
