#!/usr/bin/env bash
# Restarts host I's libvirtd: stops the recorded daemon (TERM, then KILL after ~5 s) and starts
# a new one in the same namespaces. Running guests keep running; libvirtd re-attaches to them.
# usage: restart-host.sh PREFIX I [DOWN_SECONDS=0]   (stay down that long before starting)
set -euo pipefail
. "$(dirname "$0")/common.sh"
prefix=$1 i=$2 down=${3:-0}
lvt_check_prefix "$prefix"
d=$(lvt_hdir "$prefix" "$i")
lvt_stop_pid "$(cat "$d/libvirtd.pid")" libvirtd
lvt_log "host $i: libvirtd stopped"
sleep "$down"
"$LVT_HERE/start-libvirtd.sh" "$prefix" "$i"
lvt_log "host $i: libvirtd running again"
