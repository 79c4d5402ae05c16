#!/usr/bin/env bash
# Runs the side-by-side load harness (benches/src/bin/gmond_load.rs) against real gmond and
# gmond-rs inside a fresh network namespace that has only `lo`, so no packet can leave the
# machine, then removes the namespace. Extra arguments go to the harness, e.g.
#   bash benches/gmond-load.sh --hosts 1000 --metrics 10 --rates 20000,100000,200000 --pin 1
# (`--pin CPU` pins each daemon to CPU and the harness to the other CPUs; `--auth` adds
# gmond-rs verifying signed traffic, `--bare` a bare recvmmsg loop, `--repeat N` N rounds.)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p gmond-rs -p benches --bin gmond-rs --bin gmond_load
target="${CARGO_TARGET_DIR:-target}/release"
ns="gmrs-load-$$"
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
ip netns exec "$ns" ip link set lo up
# With --pin CPU, the harness (sender and readers) runs on the other CPUs, so the daemon's
# core is not shared with the spinning sender.
pin="" prev=""
for a in "$@"; do
    [ "$prev" = "--pin" ] && pin="$a"
    prev="$a"
done
others=""
if [ -n "$pin" ]; then
    for c in $(seq 0 $(($(nproc) - 1))); do
        [ "$c" != "$pin" ] && others="${others:+$others,}$c"
    done
fi
ip netns exec "$ns" ${others:+taskset -c "$others"} "$target/gmond_load" \
    --gmond /usr/sbin/gmond --gmond-rs "$target/gmond-rs" "$@"
