#!/bin/sh
# Records the code pages an idle skiff process touches, for the linker's symbol ordering
# (README.md beside this script). Root only; runs a benchmark from target/release.
#   scripts/text-order/profile.sh agent OUT.pages [SECS]   # skiff agent, 100 idle pods (skiff-podbench)
#   scripts/text-order/profile.sh server OUT.pages [SECS]  # skiff server holding 10,000 pods (skiff-bench)
# The process under study runs a private copy of target/release/skiff opened while the
# disk's read-ahead is 0, so idle-pages.py sees single pages; read-ahead is restored after.
set -eu
what=$1
out=$2
secs=${3:-45}
root=$(cd "$(dirname "$0")/../.." && pwd)
rel=$root/target/release
work=$(mktemp -d /tmp/skiff-textprof.XXXXXX)
cp "$rel/skiff" "$work/skiff.copy"
src=$(df --output=source "$work" | tail -1)
dev=$(lsblk -no pkname "$src" 2>/dev/null || true)
[ -n "$dev" ] || dev=$(basename "$src")
ra=/sys/block/$dev/queue/read_ahead_kb
old=$(cat "$ra")
trap 'echo "$old" > "$ra"; rm -rf "$work"' EXIT
echo 0 > "$ra"
sync; echo 3 > /proc/sys/vm/drop_caches
case $what in
agent)
  # skiff-podbench runs its sibling `skiff`: the agent gets the copy, the server the original.
  cp "$rel/skiff-podbench" "$work/"
  printf '#!/bin/sh\nif [ "$1" = agent ]; then exec %s "$@"; fi\nexec %s "$@"\n' "$work/skiff.copy" "$rel/skiff" > "$work/skiff"
  chmod +x "$work/skiff"
  "$work/skiff-podbench" --hold $((secs + 100)) > "$work/bench.out" 2> "$work/bench.err" &
  pattern='s/.*agent pid \([0-9]*\),.*/\1/p' ;;
server)
  "$rel/skiff-bench" --quick --no-etcd --skiff "$work/skiff.copy" --linger $((secs + 100)) > "$work/bench.out" 2> "$work/bench.err" &
  pattern='s/.*--linger: server pid \([0-9]*\) .*/\1/p' ;;
*) echo "usage: $0 agent|server OUT.pages [SECS]" >&2; exit 2 ;;
esac
bench=$!
pid=
while [ -z "$pid" ]; do
  sleep 1
  kill -0 $bench 2>/dev/null || { cat "$work/bench.err"; exit 1; }
  pid=$(sed -n "$pattern" "$work/bench.err")
done
echo "$what pid $pid; waiting for its next trim" >&2
python3 "$root/scripts/text-order/idle-pages.py" "$pid" "$work/skiff.copy" "$secs" > "$out"
echo "$old" > "$ra"
wait $bench || true
cat "$work/bench.out"
