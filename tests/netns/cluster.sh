#!/usr/bin/env bash
# cluster.sh - gmond-rs's multi-host testbed: N hosts in network namespaces on one bridge.
#
#   cluster.sh create  PREFIX N SUBNET   hosts PREFIX-n1..nN, SUBNET.I/24 (SUBNET = 10.X.Y)
#   cluster.sh exec    PREFIX I CMD...   run CMD in host I with hostname nodeI (exec, same PID)
#   cluster.sh destroy PREFIX            kill what runs inside (by PID), delete it all; idempotent
#   cluster.sh gc                        destroy gmrs-PID-* leftovers (and scratch dirs) whose
#                                        PID is dead
#   cluster.sh list    [PREFIX]          show the testbed's namespaces
#
# Safety: nothing is created in, or changed about, the root namespace; eth0 is never touched.
#   PREFIX-br   namespace holding bridge br0 (multicast snooping off, so every port sees
#               every group) and one veth end vI per host
#   PREFIX-nI   namespace of host I: lo, e0 = SUBNET.I/24, route 239.0.0.0/8 dev e0, no
#               default route: packets can only reach the other hosts of this testbed.
#   /etc/netns/PREFIX-nI/hosts, resolv.conf: bind-mounted by `ip netns exec`, so every host
#               resolves nodeJ <-> SUBNET.J both ways and DNS fails at once (127.0.0.1).
# PREFIX must look like gmrs-PID-TAG, PID being the process that owns the testbed: `gc` uses it
# to tell a crashed run's leftovers from a live run's.
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root (network namespaces)"
command -v ip >/dev/null || die "ip not found: install iproute2"

check_prefix() {
  [[ "$1" =~ ^gmrs-[0-9]+-[A-Za-z0-9]{1,12}$ ]] || die "bad PREFIX '$1' (want gmrs-PID-TAG)"
}
has_ns() { [ -e "/run/netns/$1" ]; }
# host namespaces of PREFIX that exist, whatever N was
host_nss() {
  local f
  for f in /run/netns/"$1"-n*; do
    [ -e "$f" ] || continue
    [[ "${f##*/}" =~ ^$1-n[0-9]+$ ]] && echo "${f##*/}"
  done
  return 0
}

kill_inside() {   # every process whose network namespace is $1, by PID: TERM, then KILL
  local ns=$1 pids p round
  for round in 1 2 3 4 5 6 7 8 9 10; do
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    [ -z "$pids" ] && return 0
    for p in $pids; do
      if [ "$round" -le 4 ]; then kill -TERM "$p" 2>/dev/null || true
      else kill -KILL "$p" 2>/dev/null || true; fi
    done
    sleep 0.2
  done
}

do_destroy() {
  local prefix=$1 ns
  check_prefix "$prefix"
  for ns in $(host_nss "$prefix") "$prefix-br"; do
    if has_ns "$ns"; then
      kill_inside "$ns"
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
  for ns in /etc/netns/"$prefix"-n*; do
    [ -d "$ns" ] && [[ "${ns##*/}" =~ ^$prefix-n[0-9]+$ ]] && rm -rf -- "$ns"
  done
  rmdir /etc/netns 2>/dev/null || true   # only when no one else keeps files there
  return 0
}

do_create() {
  local prefix=$1 n=$2 subnet=$3 br i j ns hosts
  check_prefix "$prefix"
  [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 250 ] || die "N must be 1..250"
  [[ "$subnet" =~ ^10\.[0-9]{1,3}\.[0-9]{1,3}$ ]] || die "SUBNET must be 10.X.Y"
  br="$prefix-br"
  trap 'echo "cluster.sh: create failed, removing $prefix" >&2; do_destroy "$prefix"' ERR

  has_ns "$br" || ip netns add "$br"
  ip -n "$br" link set lo up
  ip -n "$br" link show br0 >/dev/null 2>&1 || ip -n "$br" link add br0 type bridge
  ip -n "$br" link set br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0
  ip -n "$br" link set br0 up
  ip netns exec "$br" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true

  hosts=$'127.0.0.1 localhost\n'
  for ((j = 1; j <= n; j++)); do hosts+="$subnet.$j node$j"$'\n'; done

  for ((i = 1; i <= n; i++)); do
    ns="$prefix-n$i"
    has_ns "$ns" || ip netns add "$ns"
    # IPv6 off before links come up: no NDP/MLD chatter on the bridge
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 || true
    ip -n "$ns" link set lo up
    if ! ip -n "$ns" link show e0 >/dev/null 2>&1; then
      ip -n "$br" link del "v$i" 2>/dev/null || true
      ip -n "$br" link add "v$i" type veth peer name e0 netns "$ns"
    fi
    ip -n "$br" link set "v$i" master br0
    ip -n "$br" link set "v$i" up
    ip -n "$ns" addr replace "$subnet.$i/24" dev e0
    ip -n "$ns" link set e0 up
    ip -n "$ns" route replace 239.0.0.0/8 dev e0
    mkdir -p "/etc/netns/$ns"
    printf '%s' "$hosts" > "/etc/netns/$ns/hosts"
    printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "/etc/netns/$ns/resolv.conf"
  done
  trap - ERR
  # veths need a moment before they carry traffic
  for ((i = 1; i <= n; i++)); do
    for j in $(seq 1 100); do
      ip -n "$prefix-n$i" -br link show e0 2>/dev/null | grep -q 'LOWER_UP' && break
      sleep 0.05
    done
  done
}

do_exec() {
  local prefix=$1 idx=$2 ns; shift 2
  check_prefix "$prefix"
  [[ "$idx" =~ ^[0-9]+$ ]] || die "bad host index '$idx'"
  ns="$prefix-n$idx"
  has_ns "$ns" || die "namespace $ns does not exist"
  [ $# -ge 1 ] || die "exec needs a command"
  # ip netns exec and unshare (without --fork) exec, and so does sh: CMD keeps this PID, so
  # killing that PID kills CMD. A private UTS namespace gives the host its own gethostname().
  exec ip netns exec "$ns" unshare --uts -- sh -c 'hostname "$0" && exec "$@"' "node$idx" "$@"
}

do_gc() {
  local f name pid prefixes=""
  for f in /run/netns/gmrs-* /etc/netns/gmrs-*; do
    [ -e "$f" ] || continue
    name=${f##*/}
    [[ "$name" =~ ^(gmrs-([0-9]+)-[A-Za-z0-9]{1,12})-(br|n[0-9]+)$ ]] || continue
    pid=${BASH_REMATCH[2]}
    [ -d "/proc/$pid" ] && continue   # owner still running: not ours to touch
    case " $prefixes " in *" ${BASH_REMATCH[1]} "*) ;; *) prefixes+=" ${BASH_REMATCH[1]}" ;; esac
  done
  for f in $prefixes; do
    echo "cluster.sh: removing leftover testbed $f (owner gone)" >&2
    do_destroy "$f"
  done
  # scratch dirs of netns::Cluster (TempDir "netns": gmond-rs-netns-PID-N) of dead owners
  for f in "${TMPDIR:-/tmp}"/gmond-rs-netns-*; do
    [ -d "$f" ] || continue
    [[ "${f##*/}" =~ ^gmond-rs-netns-([0-9]+)-[0-9]+$ ]] || continue
    [ -d "/proc/${BASH_REMATCH[1]}" ] || rm -rf -- "$f"
  done
  return 0
}

do_list() {
  local f
  for f in /run/netns/"${1:-gmrs-}"*; do
    [ -e "$f" ] || continue
    echo "== ${f##*/}"; ip -n "${f##*/}" -br addr | sed 's/^/   /'
  done
}

cmd=${1:-}; shift || true
case "$cmd" in
  create)  [ $# -eq 3 ] || die "usage: create PREFIX N SUBNET"; do_create "$@" ;;
  exec)    [ $# -ge 3 ] || die "usage: exec PREFIX I CMD..."; do_exec "$@" ;;
  destroy) [ $# -eq 1 ] || die "usage: destroy PREFIX"; do_destroy "$1" ;;
  gc)      do_gc ;;
  list)    do_list "${1:-}" ;;
  *) awk 'NR > 1 && /^#/ { print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
