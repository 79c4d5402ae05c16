#!/usr/bin/env bash
# Runs CMD on testbed host I: in the host's network, mount and UTS namespaces (hostname hvI,
# its /etc/hosts, its libvirtd at qemu:///system, its address, multicast on the bridge).
# The command keeps this script's PID (everything execs), so killing that PID kills CMD.
# With --record NAME, "PID NAME" is appended to the list of processes teardown.sh stops.
# usage: exec.sh [--record NAME] PREFIX I CMD [ARGS...]
set -euo pipefail
. "$(dirname "$0")/common.sh"
record=
if [ "${1:-}" = --record ]; then record=$2; shift 2; fi
prefix=$1 i=$2; shift 2
lvt_check_prefix "$prefix"
[[ "$i" =~ ^[0-9]+$ ]] || lvt_die "bad host index '$i'"
[ $# -ge 1 ] || lvt_die "exec needs a command"
if [ -n "$record" ]; then
  # NAME must appear in the final command line: teardown.sh checks it before killing the PID.
  echo "$$ $record" >> "$(lvt_hdir "$prefix" "$i")/spawned"
fi
lvt_enter "$prefix" "$i" "$@"
