#!/usr/bin/env bash
# Starts libvirtd on testbed host I (inside the host's namespaces and cgroups) and waits until
# it answers on its unix socket. Used by setup.sh and restart-host.sh.
# usage: start-libvirtd.sh PREFIX I
set -euo pipefail
. "$(dirname "$0")/common.sh"
prefix=$1 i=$2
lvt_check_prefix "$prefix"
d=$(lvt_hdir "$prefix" "$i")
holder=$(cat "$d/holder.pid")
lvt_is_proc "$holder" sleep || lvt_die "host $i: holder $holder is not running"

# A subshell that joins the host's cgroups first (paths of the root namespace), then becomes
# libvirtd inside the host's namespaces: in the host's cgroup namespace libvirtd sees its own
# cgroup as "/", and QEMU inherits that. nsenter execs, so $! is libvirtd's PID.
start() {
  (
    if [ -e "$(lvt_state "$prefix")/cgroups" ]; then
      for c in $LVT_CGROUP_CTRLS; do
        echo "$BASHPID" > "/sys/fs/cgroup/$c/$(lvt_cgroup "$prefix" "$i")/cgroup.procs"
      done
      ns_cg=--cgroup
    else
      ns_cg=
    fi
    exec nsenter --target "$holder" --net --mount --uts $ns_cg -- \
      /usr/sbin/libvirtd --listen --config /etc/libvirt/libvirtd.conf \
      --pid-file /run/libvirt/libvirtd.pid
  ) >>"$d/libvirtd.out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$d/libvirtd.pid"
}

# A daemon that exits at once is started again (up to 3 times): right after a restart the
# old daemon's pid-file lock can outlive it by a moment on a loaded machine, and the new one
# then quits.
uri=$(lvt_local_uri "$prefix" "$i")
for attempt in 1 2 3; do
  start
  for _ in $(seq 1 300); do
    if virsh -c "$uri" uri >/dev/null 2>&1; then exit 0; fi
    lvt_child_alive "$pid" || break
    sleep 0.1
  done
  lvt_child_alive "$pid" && break
  lvt_log "host $i: libvirtd exited at start (attempt $attempt)"
  sleep 1
done
echo "host $i: libvirtd did not come up; last lines of its logs:" >&2
tail -n 8 "$d/libvirtd.out" "$d/log/libvirtd.log" >&2 2>/dev/null || true
exit 1
