#!/usr/bin/env bash
# The project's one test command (README; .ci/run calls exactly this).
# Installs what the tests need (Debian packages, cargo-fuzz) idempotently, then runs every gate:
# rustfmt, clippy -D warnings, the purity checks, all unit/property/integration/interop tests,
# the benches in test mode, and every fuzz target for a short while. Exits non-zero if anything
# fails. Progress goes to stderr as "== step" lines.
set -uo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS="${FUZZ_SECONDS:-20}"
# A fresh clone gains nothing from incremental compilation, and its caches doubled the target
# directory: off unless the caller asks for it.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
failed=()
step() { printf '\n== %s\n' "$*" >&2; }
run() { # run NAME CMD...: records a failure instead of stopping, so one run shows every problem
    local name=$1; shift
    step "$name"
    if ! "$@"; then
        failed+=("$name")
        printf '!! %s failed\n' "$name" >&2
    fi
}

# --- System packages -------------------------------------------------------------------------
# Real peers (gmond, gmetric, gstat, gmetad), rrdtool, libvirt's client library (the `virt`
# crate links it), and the tools the interop tests drive. --no-install-recommends: some
# recommends multicast on their own (avahi-daemon).
# python3 (Debian's, /usr/bin/python3): the rrd lock test holds an fcntl lock from a second
# process; python3-rrdtool: librrd for the rrd side-by-side benchmark.
# libvirt-daemon + the QEMU driver + qemu-system-x86: real libvirtd and TCG guests for the VM
# metric and live-migration tests, in namespaces the tests build (tests/libvirt). Not
# libvirt-daemon-system: it brings a default NAT network, polkit and firewall packages.
# ganglia-webfrontend, PHP (cli for its built-in server, cgi and xml as ganglia-web needs),
# chromium and patch: the browser test serves a private, patched copy of ganglia-web on
# 127.0.0.1 and drives headless Chromium (chromium's recommends would bring avahi-daemon);
# systemd only for systemd-analyze, which checks the shipped unit files (no init is started).
PACKAGES=(ganglia-monitor gmetad rrdtool libvirt-dev libvirt-clients iproute2 tcpdump
          libxml2-utils pkg-config python3 python3-rrdtool
          libvirt-daemon libvirt-daemon-driver-qemu qemu-system-x86
          ganglia-webfrontend php-cli php-cgi php-xml chromium patch systemd)
daemon_pids() { # one pgrep per name: pgrep refuses a whole pattern longer than 15 characters
    local name
    for name in gmond gmetad apache2 libvirtd avahi-daemon; do pgrep -x "$name"; done
    return 0
}
install_packages() {
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    step "installing ${missing[*]}"
    # Never let a package start its daemon outside a test namespace: gmond's stock config
    # multicasts on eth0. policy-rc.d makes invoke-rc.d refuse; remove ours afterwards.
    local guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    local before; before=$(daemon_pids)
    DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    local rc=$?
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
    # Belt and braces: stop any daemon the install started (by PID, only new ones).
    for pid in $(daemon_pids); do
        grep -qx "$pid" <<<"$before" || kill "$pid" 2>/dev/null
    done
    return $rc
}
step "disk at start"
df -h . >&2
run "system packages" install_packages

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    run "install cargo-fuzz" cargo install cargo-fuzz --locked --quiet
fi

# --- Gates -------------------------------------------------------------------------------------
# Everything is built with --all-features (libvirt on), as hypervisor hosts build it; the
# default build (the demo, no libvirt) is checked by the purity step and the no-libvirt tests.
run "rustfmt" cargo fmt --all --check
run "clippy" cargo clippy --workspace --all-targets --all-features --quiet -- -D warnings
run "clippy (default features)" cargo clippy --workspace --all-targets --quiet -- -D warnings

# Architecture invariants that a dependency change could silently break.
# `cargo tree -i DEP` prints the paths to DEP; it exits 0 with nothing printed when DEP is in
# the workspace's graph but not below the package, and fails when DEP is nowhere: only
# printed paths mean a dependency.
not_in_tree() { # not_in_tree CRATE DEP: CRATE must not depend on DEP (normal edges, all features)
    local out
    out=$(cargo tree -p "$1" --all-features -e normal -i "$2" 2>/dev/null) || return 0
    if [ -n "$out" ]; then
        echo "$1 depends on $2:" >&2
        echo "$out" >&2
        return 1
    fi
}
default_build_is_pure_rust() { # the default members (the demo) link no system library
    local dep out
    for dep in virt-sys virt cc pkg-config; do
        out=$(cargo tree -e normal,build -i "$dep" 2>/dev/null) || continue
        if [ -n "$out" ]; then
            echo "the default build (cargo run --release) needs $dep:" >&2
            echo "$out" >&2
            return 1
        fi
    done
}
only_metrics_links_libvirt() { # virt's only direct user is gmond-metrics (all libvirt FFI)
    local users
    users=$(cargo tree --workspace --all-features -e normal -i virt --depth 1 --prefix none |
        tail -n +2 | awk '{print $1}' | sort -u)
    if [ "$users" != "gmond-metrics" ]; then
        echo "virt is used directly by: $users (only gmond-metrics may)" >&2
        return 1
    fi
}
purity() {
    not_in_tree ganglia-wire tokio && not_in_tree ganglia-wire socket2 &&
        not_in_tree ganglia-wire virt && not_in_tree balancer virt &&
        not_in_tree gmond-conf tokio && not_in_tree rrd ganglia-wire &&
        not_in_tree rrd tokio && not_in_tree balancer-agent tokio &&
        not_in_tree gmond-rs balancer && not_in_tree gmond-rs balancer-agent &&
        not_in_tree gmond-rs plotters &&
        default_build_is_pure_rust && only_metrics_links_libvirt
}
run "purity (cargo tree)" purity

# --- Tests -------------------------------------------------------------------------------------
# The system tests in tests/ run every component's binaries from the target directory
# (integration_tests::bin), so those are built first, with the same features and profile.
run "build binaries" cargo build --workspace --bins --all-features --quiet
# --all-targets also runs each criterion bench once in test mode, so benches keep compiling.
run "cargo test" cargo test --workspace --all-targets --all-features --no-fail-fast
run "doc tests" cargo test --workspace --doc --all-features --quiet
# Without libvirt: the refusals that name the feature (gmond-rs's libvirt_module, the agent's
# libvirt executor) only exist in that build.
run "tests without libvirt" cargo test --quiet -p gmond-rs -p balancer-agent --lib --bins

# --- Fuzz targets: build all, run each briefly from the fixture seeds ---------------------------
fuzz_all() {
    local corpus; corpus=$(mktemp -d)
    local rc=0 t seeds
    # Optimised, with debug assertions (-a) and overflow checks on: an arithmetic overflow on
    # hostile input is a finding, not a silent wrap.
    export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
    (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O -a) || return 1
    for t in $(cd fuzz && cargo fuzz list); do
        mkdir -p "$corpus/$t"
        case $t in
            xdr_*) seeds=tests/fixtures/ganglia-3.7.2/bin ;;
            xml_read) seeds=tests/fixtures/ganglia-3.7.2/xml ;;
            gmond_conf) seeds=gmond-rs/conf/tests/data ;;
            rrd_text) seeds=fuzz/seeds/rrd_text ;;
            auth_trailer) seeds=fuzz/seeds/auth_trailer ;;
            balancer_inputs) seeds=configs/policies ;;
            agent_inputs) seeds=tests/fixtures/ganglia-3.7.2/xml ;;
            query_request) seeds=fuzz/seeds/query_request ;;
            *) seeds="" ;;
        esac
        [ -n "$seeds" ] && [ -d "$seeds" ] && seeds=$(realpath "$seeds") || seeds=""
        step "fuzz $t for ${FUZZ_SECONDS}s"
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a "$t" "$corpus/$t" ${seeds:+"$seeds"} -- \
            -max_total_time="$FUZZ_SECONDS" -print_final_stats=0 2>&1 | tail -n 3) || rc=1
    done
    rm -rf "$corpus"
    return $rc
}
run "fuzz" fuzz_all

# --- Summary -----------------------------------------------------------------------------------
# What the run left on disk: CI machines have run out of it, so every run says.
step "disk"
du -sh target fuzz/target >&2 2>/dev/null
df -h . >&2
if [ ${#failed[@]} -ne 0 ]; then
    printf '\nFAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
printf '\nall gates passed\n' >&2
