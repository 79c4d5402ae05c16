# shellcheck shell=bash
# Shared by the libvirt testbed scripts (sourced, never run).
#
# A testbed is named by PREFIX = gvirt-OWNERPID-TAG. OWNERPID is the process that owns it (the
# Rust test binary, or the shell that ran setup.sh by hand): `teardown.sh --stale` removes a
# testbed only once that process is gone, so a crashed run is cleaned up and a live one is not.
LVT_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LVT_ROOT=${LVT_ROOT:-/tmp/gmond-rs-lvt}            # state of every testbed: $LVT_ROOT/PREFIX
LVT_NET=${LVT_NET:-10.77.0}                        # host I is $LVT_NET.I/24 (inside its netns)
LVT_CAPS_CACHE=${LVT_CAPS_CACHE:-/var/tmp/gmond-rs-lvt-qemu-caps}
# cgroup v1 hierarchies each host gets a private subtree of (CPU quotas, per-VM CPU stats)
LVT_CGROUP_CTRLS="cpu cpuacct"

lvt_die() { echo "lvt: $*" >&2; exit 1; }
lvt_log() { echo "[lvt $(date +%T.%3N)] $*" >&2; }

lvt_check_prefix() {
  [[ "$1" =~ ^gvirt-[0-9]+-[a-z0-9]{1,12}$ ]] || lvt_die "bad PREFIX '$1' (want gvirt-PID-TAG)"
}
lvt_state()  { echo "$LVT_ROOT/$1"; }                   # PREFIX -> state dir
lvt_hdir()   { echo "$LVT_ROOT/$1/h$2"; }               # PREFIX I -> host I's state dir
lvt_ns()     { echo "$1-h$2"; }                          # PREFIX I -> host I's network namespace
lvt_addr()   { echo "$LVT_NET.$1"; }
lvt_name()   { echo "hv$1"; }                            # host I's hostname (and Ganglia NAME)
lvt_cgroup() { echo "$1-h$2"; }                          # PREFIX I -> cgroup dir under each root
# The unix socket of host I's libvirtd, usable from the root namespace (no network involved).
lvt_local_uri() { echo "qemu+unix:///system?socket=$(lvt_hdir "$1" "$2")/run/libvirt-sock"; }
# The TCP URI other hosts (and programs inside any host) use.
lvt_tcp_uri()   { echo "qemu+tcp://$(lvt_addr "$1")/system"; }
# A distinct host UUID per host: libvirt refuses to migrate between two hosts with the same one.
lvt_uuid()   { printf '6776697a-0000-4000-8000-%012d\n' "$1"; }

# True when PID exists, is not a zombie, and its command line contains WANT.
lvt_is_proc() {
  local pid=$1 want=$2
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null && return 1
  grep -qa -- "$want" "/proc/$pid/cmdline" 2>/dev/null
}

# Whether PID, a child of this shell, still runs. By state and parent, not by command line:
# while a child execs (the subshell becomes nsenter, nsenter becomes libvirtd) its cmdline
# reads empty for a moment, and a check by name then took a starting libvirtd for a dead one
# (a CI run failed so). The parent check keeps a PID reused after bash reaped the child from
# passing for it.
lvt_child_alive() {
  local pid=$1 st
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  st=$(cat "/proc/$pid/status" 2>/dev/null) || return 1
  grep -q '^State:[[:space:]]*Z' <<<"$st" && return 1
  grep -q "^PPid:[[:space:]]*$$\$" <<<"$st"
}

# Stops PID (if it still runs WANT): TERM, up to ~5 s, then KILL.
lvt_stop_pid() {
  local pid=$1 want=$2 n
  lvt_is_proc "$pid" "$want" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for n in $(seq 1 50); do
    lvt_is_proc "$pid" "$want" || return 0
    sleep 0.1
  done
  lvt_is_proc "$pid" "$want" && kill -KILL "$pid" 2>/dev/null
  return 0
}

# Runs CMD inside host I: its network, mount and UTS namespaces (those of the host's holder
# process), so it sees the host's hostname, /etc/hosts, private /run/libvirt and address.
# nsenter execs in place: the PID of this call is CMD's PID.
lvt_enter() {
  local prefix=$1 i=$2 holder; shift 2
  holder=$(cat "$(lvt_hdir "$prefix" "$i")/holder.pid" 2>/dev/null) || lvt_die "no host $i in $prefix"
  lvt_is_proc "$holder" sleep || lvt_die "host $i of $prefix: holder $holder is gone"
  exec nsenter --target "$holder" --net --mount --uts -- "$@"
}
