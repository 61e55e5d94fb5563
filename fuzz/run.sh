#!/usr/bin/env bash
# Runs skiff's fuzz targets with cargo-fuzz on the stable toolchain (see docs/fuzzing.md).
#
#   fuzz/run.sh [SECONDS] [TARGET...]     # default: 60 s for each of `cargo fuzz list`
#
# Corpora grow in fuzz/corpus/<target>/ (seeded from fuzz/seeds/<target>/, and for
# protobuf_decode from kubectl's fixtures). A crash stops that target, leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit non-zero after the other targets ran.
set -uo pipefail
cd "$(dirname "$0")/.."

secs="${1:-60}"
shift || true

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked || exit 1
# cargo-fuzz passes nightly-only flags to rustc; this lets the stable compiler accept them.
export RUSTC_BOOTSTRAP=1

targets=("$@")
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(cargo fuzz list)
fi

# The crates forbid unsafe code, so AddressSanitizer adds cost without finding more:
# build without it (panics, overflow and debug assertions are still caught).
if ((${#targets[@]} == 1)); then
    cargo fuzz build -s none "${targets[0]}" || exit 1
else
    cargo fuzz build -s none || exit 1
fi

failed=()
for t in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$t"
    dirs=("fuzz/corpus/$t")
    [[ -d "fuzz/seeds/$t" ]] && dirs+=("fuzz/seeds/$t")
    [[ "$t" == protobuf_decode ]] && dirs+=("crates/skiff-api/src/protobuf/testdata")
    echo "=== $t: ${secs}s"
    if ! cargo fuzz run -s none "$t" "${dirs[@]}" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=10 -print_final_stats=1; then
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz targets that crashed: ${failed[*]} (inputs in fuzz/artifacts/<target>/)" >&2
    exit 1
fi
echo "all ${#targets[@]} fuzz targets ran ${secs}s without a crash"
