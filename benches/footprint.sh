#!/usr/bin/env bash
# Runs the footprint bench (benches/src/bin/footprint.rs): an emulated 1,000-host cluster sent
# to real gmond 3.7.2 alone, then to gmond-rs with a follower balancer agent, then with a
# leader agent, inside a fresh network namespace that has only `lo` (nothing can leave the
# machine); the namespace is removed at exit and whatever still runs in it is stopped by PID.
# Extra arguments go to the harness, e.g.
#   bash benches/footprint.sh --pin 1                       # 1,000 hosts x 20 VMs, 60 s + 300 s
#   bash benches/footprint.sh --smoke     # 20 hosts x 2 VMs, 3 s + 5 s (tests/tests/footprint_smoke.rs)
# (`--pin CPU` pins the daemon and the agent to CPU and the harness to the other CPUs;
# `--configs gmond,follower,leader`, `--agent-set 'key = value'`, `--rs-conf FILE`,
# `--executor libvirt|none`, `--probe-membership`, `--vm-io`: see the harness's --help.)
# It builds the release binaries first (honouring CARGO_TARGET_DIR); with FOOTPRINT_BIN_DIR set
# it builds nothing and takes gmond-rs, balancer-agent and footprint from that directory.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${FOOTPRINT_BIN_DIR:-}" ]; then
    bin="$FOOTPRINT_BIN_DIR"
else
    cargo build --release -q -p gmond-rs -p balancer-agent -p benches \
        --features balancer-agent/libvirt --bin gmond-rs --bin balancer-agent --bin footprint
    bin="${CARGO_TARGET_DIR:-target}/release"
fi
ns="gmrs-fp-$$"
cleanup() {
    local pids p
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    for p in $pids; do kill "$p" 2>/dev/null || true; done
    if [ -n "$pids" ]; then
        sleep 1
        for p in $(ip netns pids "$ns" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
    fi
    ip netns del "$ns" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
# With --pin CPU, the harness (the sender) runs on the other CPUs, so the measured processes'
# core is not shared with it.
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
ip netns exec "$ns" ${others:+taskset -c "$others"} "$bin/footprint" \
    --gmond /usr/sbin/gmond --gmond-rs "$bin/gmond-rs" --agent "$bin/balancer-agent" "$@"
