#!/usr/bin/env bash
# Removes testbed PREFIX: stops the processes it recorded (libvirtd, the QEMUs libvirt
# recorded, the holders, programs started with exec.sh --record), then anything still left in
# its own namespaces, deletes the namespaces, its cgroups and its state directory. Idempotent.
#
# usage: teardown.sh PREFIX        one testbed
#        teardown.sh --stale       every gvirt-PID-* testbed whose owner PID is gone
set -uo pipefail
. "$(dirname "$0")/common.sh"
[ "$(id -u)" = 0 ] || lvt_die "must run as root"

# Prefixes of testbeds with any trace left: namespaces, state dirs, cgroups.
all_prefixes() {
  local f name
  {
    for f in /run/netns/gvirt-* "$LVT_ROOT"/gvirt-* /sys/fs/cgroup/cpu/gvirt-* /sys/fs/cgroup/cpuacct/gvirt-*; do
      [ -e "$f" ] || continue
      name=${f##*/}
      [[ "$name" =~ ^(gvirt-[0-9]+-[a-z0-9]{1,12})(-br|-h[0-9]+)?$ ]] && echo "${BASH_REMATCH[1]}"
    done
  } | sort -u
}

stop_host() {  # PREFIX I
  local d pid pf
  d=$(lvt_hdir "$1" "$2")
  lvt_stop_pid "$(cat "$d/libvirtd.pid" 2>/dev/null)" libvirtd &
  # QEMU survives its libvirtd: stop the ones libvirt recorded (pid files in our state dir).
  for pf in "$d"/run/qemu/*.pid; do
    [ -e "$pf" ] && lvt_stop_pid "$(cat "$pf" 2>/dev/null)" qemu-system &
  done
  # Programs started in the host through exec.sh --record (one "PID NAME" per line).
  if [ -e "$d/spawned" ]; then
    while read -r pid name; do lvt_stop_pid "$pid" "$name" & done < "$d/spawned"
  fi
  wait
  lvt_stop_pid "$(cat "$d/holder.pid" 2>/dev/null)" sleep
}

destroy() {  # PREFIX
  local prefix=$1 s d i ns pids p c round
  lvt_check_prefix "$prefix"
  s=$(lvt_state "$prefix")
  for d in "$s"/h*; do
    [ -d "$d" ] || continue
    i=${d##*/h}
    [[ "$i" =~ ^[0-9]+$ ]] && stop_host "$prefix" "$i" &
  done
  wait
  # Whatever still runs in our namespaces was started there by us (a child of a recorded
  # process, or a program run without --record): the namespace names carry our owner PID.
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
    [[ "$ns" =~ ^$prefix-(br|h[0-9]+)$ ]] || continue
    for round in 1 2 3 4 5 6 7 8 9 10; do
      pids=$(ip netns pids "$ns" 2>/dev/null)
      [ -z "$pids" ] && break
      for p in $pids; do
        lvt_log "$ns: stopping leftover $p ($(tr '\0' ' ' < "/proc/$p/cmdline" 2>/dev/null | cut -c1-80))"
        if [ "$round" -le 5 ]; then kill -TERM "$p" 2>/dev/null; else kill -KILL "$p" 2>/dev/null; fi
      done
      sleep 0.2
    done
    ip netns del "$ns" 2>/dev/null || lvt_log "cannot delete namespace $ns"
  done
  # cgroups: libvirt leaves machine/... behind; remove the subtree deepest first (a dir with
  # tasks still in it refuses, and says so).
  for c in $LVT_CGROUP_CTRLS; do
    for d in /sys/fs/cgroup/"$c"/"$prefix"-h*; do
      [ -d "$d" ] || continue
      for round in 1 2 3 4 5 6 7 8 9 10; do
        find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$d" ] || break
        sleep 0.2
      done
      [ -d "$d" ] && lvt_log "cannot remove cgroup $d"
    done
  done
  # Never follow a symlink out of our state directory.
  [ -d "$s" ] && [ ! -L "$s" ] && rm -rf --one-file-system -- "$s"
  rmdir "$LVT_ROOT" 2>/dev/null
  return 0
}

case "${1:-}" in
  --stale)
    for p in $(all_prefixes); do
      owner=${p#gvirt-}; owner=${owner%%-*}
      [ -d "/proc/$owner" ] && continue
      lvt_log "removing leftover testbed $p (owner $owner is gone)"
      destroy "$p"
    done ;;
  gvirt-*)
    t0=$(date +%s.%N)
    destroy "$1"
    lvt_log "testbed $1 down in $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N)-$t0}") s" ;;
  *) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
