#!/usr/bin/env bash
# Builds testbed PREFIX: N hypervisor "hosts" on one machine, each a set of namespaces with
# its own libvirtd, on one bridge. Prints one line per host when done.
#
#   PREFIX-br   network namespace with bridge br0 (multicast snooping off: every port gets
#               every group, as on a dumb switch) and one veth end vI per host
#   PREFIX-hI   host I: lo, e0 = $LVT_NET.I/24, route 239.0.0.0/8 dev e0 (Ganglia multicast
#               stays on the bridge), NO default route: nothing can reach the machine's eth0
#   holder      `sleep` in the host's net + mount + UTS + cgroup namespaces: hostname hvI,
#               private /etc/libvirt, /run/libvirt, /var/lib/libvirt, /var/cache/libvirt,
#               /var/log/libvirt, /etc/hosts (hvJ <-> $LVT_NET.J), /etc/resolv.conf (fails
#               fast), /etc/passwd+group (with the libvirt-qemu user Debian's QEMU driver wants)
#   libvirtd    in those namespaces; TCP 16509 on $LVT_NET.I only, no TLS, no auth;
#               distinct host UUID; QEMU migration ports 49152-49215 on $LVT_NET.I
#   images      $LVT_ROOT/PREFIX/images = /var/lib/libvirt/images on every host (shared storage)
#   cgroups     /sys/fs/cgroup/{cpu,cpuacct}/PREFIX-hI, the root of the host's cgroup namespace
#               (so guests can have CPU quotas); LVT_CGROUPS=0 leaves cgroups out
#
# usage: setup.sh PREFIX [N=3]       (PREFIX = gvirt-OWNERPID-TAG; run as root)
set -euo pipefail
. "$(dirname "$0")/common.sh"
prefix=${1:-}; n=${2:-3}
lvt_check_prefix "$prefix"
[[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || lvt_die "N must be 1..200"
[ "$(id -u)" = 0 ] || lvt_die "must run as root (namespaces, bind mounts, cgroups)"
need() { command -v "$1" >/dev/null || lvt_die "$1 not found: install $2"; }
need ip iproute2
need nsenter util-linux
need unshare util-linux
need virsh libvirt-clients
need qemu-system-x86_64 qemu-system-x86
[ -x /usr/sbin/libvirtd ] || lvt_die "/usr/sbin/libvirtd not found: install libvirt-daemon libvirt-daemon-driver-qemu"
[ -e /usr/lib/x86_64-linux-gnu/libvirt/connection-driver/libvirt_driver_qemu.so ] ||
  ls /usr/lib/*/libvirt/connection-driver/libvirt_driver_qemu.so >/dev/null 2>&1 ||
  lvt_die "libvirt's QEMU driver not found: install libvirt-daemon-driver-qemu"
s=$(lvt_state "$prefix")
[ -e "$s" ] && lvt_die "$s exists: run teardown.sh $prefix first"
[ -e "/run/netns/$prefix-br" ] && lvt_die "namespace $prefix-br exists: run teardown.sh $prefix first"
cgroups=${LVT_CGROUPS:-1}
if [ "$cgroups" = 1 ]; then
  for c in $LVT_CGROUP_CTRLS; do
    [ -e "/sys/fs/cgroup/$c/cgroup.procs" ] || lvt_die "cgroup v1 controller '$c' is not mounted at /sys/fs/cgroup/$c (guest CPU quotas need it; LVT_CGROUPS=0 runs without)"
  done
fi

t0=$(date +%s.%N)
# Any failure from here on (including lvt_die) removes what was built so far.
trap 'rc=$?; if [ "$rc" != 0 ]; then echo "lvt: setup of $prefix failed, tearing it down" >&2; "$LVT_HERE/teardown.sh" "$prefix" >&2; fi' EXIT

mkdir -p "$s/etc" "$s/images" "$s/guests"
"$LVT_HERE/mkimages.sh" "$s/images" >/dev/null
{
  echo "127.0.0.1 localhost"
  for i in $(seq 1 "$n"); do echo "$(lvt_addr "$i") $(lvt_name "$i")"; done
} > "$s/etc/hosts"
printf 'nameserver 127.0.0.1\noptions timeout:1 attempts:1\n' > "$s/etc/resolv.conf"
# Debian's QEMU driver resolves its built-in default user "libvirt-qemu" at start-up even when
# qemu.conf says root. Add it to the hosts' private copies, never to the machine's own files.
cp /etc/passwd "$s/etc/passwd"; cp /etc/group "$s/etc/group"
grep -q '^libvirt-qemu:' "$s/etc/group"  || echo 'libvirt-qemu:x:64055:' >> "$s/etc/group"
grep -q '^libvirt-qemu:' "$s/etc/passwd" ||
  echo 'libvirt-qemu:x:64055:64055:libvirt qemu:/var/lib/libvirt:/usr/sbin/nologin' >> "$s/etc/passwd"
[ "$cgroups" = 1 ] && touch "$s/cgroups"
echo "$n" > "$s/hosts.count"

# The switch.
br=$prefix-br
ip netns add "$br"
ip netns exec "$br" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
ip -n "$br" link set lo up
ip -n "$br" link add br0 type bridge
ip -n "$br" link set br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0
ip -n "$br" link set br0 up

for i in $(seq 1 "$n"); do
  d=$(lvt_hdir "$prefix" "$i"); ns=$(lvt_ns "$prefix" "$i"); addr=$(lvt_addr "$i")
  mkdir -p "$d"/{etc/qemu,run,lib,cache,log}
  ip netns add "$ns"
  # IPv6 off before the link comes up: no router/neighbour chatter on the bridge.
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$ns" link set lo up
  ip -n "$br" link add "v$i" type veth peer name e0 netns "$ns"
  ip -n "$br" link set "v$i" master br0 up
  ip -n "$ns" addr add "$addr/24" dev e0
  ip -n "$ns" link set e0 up
  ip -n "$ns" route add 239.0.0.0/8 dev e0

  cat > "$d/etc/libvirtd.conf" <<CONF
# testbed host $(lvt_name "$i") of $prefix: plain TCP on the namespace address only
listen_tls = 0
listen_tcp = 1
listen_addr = "$addr"
tcp_port = "16509"
auth_tcp = "none"
auth_unix_rw = "none"
auth_unix_ro = "none"
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
host_uuid = "$(lvt_uuid "$i")"
log_level = 3
log_outputs = "3:file:/var/log/libvirt/libvirtd.log"
min_workers = 2
max_workers = 8
prio_workers = 2
CONF
  if [ "$cgroups" = 1 ]; then cg='cgroup_controllers = [ "cpu", "cpuacct" ]'; else cg='cgroup_controllers = [ ]'; fi
  cat > "$d/etc/qemu.conf" <<CONF
# testbed host $(lvt_name "$i") of $prefix. No security driver, no private /dev, no virtlogd
# (QEMU's output goes to /var/log/libvirt/qemu/NAME.log), root: nothing here has them.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
namespaces = [ ]
seccomp_sandbox = 0
$cg
stdio_handler = "file"
# migration streams listen and connect on the namespace address; names are never needed
migration_address = "$addr"
migration_host = "$addr"
migration_port_min = 49152
migration_port_max = 49215
vnc_listen = "127.0.0.1"
spice_listen = "127.0.0.1"
CONF

  # The holder: joins the host's cgroups, then enters fresh namespaces (see host-init.sh).
  (
    if [ "$cgroups" = 1 ]; then
      for c in $LVT_CGROUP_CTRLS; do
        mkdir -p "/sys/fs/cgroup/$c/$(lvt_cgroup "$prefix" "$i")"
        echo "$BASHPID" > "/sys/fs/cgroup/$c/$(lvt_cgroup "$prefix" "$i")/cgroup.procs"
      done
      ns_cg=--cgroup
    else
      ns_cg=
    fi
    exec ip netns exec "$ns" unshare --mount --uts $ns_cg --propagation private -- \
      "$LVT_HERE/host-init.sh" "$prefix" "$i"
  ) >"$d/holder.out" 2>&1 </dev/null &
  echo $! > "$d/holder.pid"
done

# Each holder is ready once host-init.sh has become `sleep`.
for i in $(seq 1 "$n"); do
  d=$(lvt_hdir "$prefix" "$i"); pid=$(cat "$d/holder.pid"); ok=
  for _ in $(seq 1 200); do
    if grep -qx sleep "/proc/$pid/comm" 2>/dev/null; then ok=1; break; fi
    [ -e "/proc/$pid" ] || break
    sleep 0.05
  done
  [ -n "$ok" ] || { cat "$d/holder.out" >&2; lvt_die "host $i: namespaces not set up"; }
done

# libvirt probes each QEMU binary (~2-4 s each on a busy 2-core box) the first time a host
# needs it. Probe once (host capabilities cover x86_64 and i386), keep the result across runs
# in $LVT_CAPS_CACHE, and give every host a copy before its daemon starts; libvirt re-checks
# the copy against the binaries and re-probes when it is stale.
first=1
if ! ls "$LVT_CAPS_CACHE"/*.xml >/dev/null 2>&1; then
  "$LVT_HERE/start-libvirtd.sh" "$prefix" 1
  virsh -q -c "$(lvt_local_uri "$prefix" 1)" capabilities >/dev/null
  mkdir -p "$LVT_CAPS_CACHE"
  cp "$(lvt_hdir "$prefix" 1)"/cache/qemu/capabilities/*.xml "$LVT_CAPS_CACHE"/
  first=2
fi
for i in $(seq 1 "$n"); do
  c=$(lvt_hdir "$prefix" "$i")/cache/qemu/capabilities
  mkdir -p "$c" && cp -n "$LVT_CAPS_CACHE"/*.xml "$c"/
done
pids=()
for i in $(seq "$first" "$n"); do "$LVT_HERE/start-libvirtd.sh" "$prefix" "$i" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || lvt_die "a libvirtd did not start"; done
trap - EXIT

lvt_log "testbed $prefix up: $n hosts in $(awk "BEGIN{printf \"%.2f\", $(date +%s.%N)-$t0}") s"
for i in $(seq 1 "$n"); do
  echo "$(lvt_name "$i") ns=$(lvt_ns "$prefix" "$i") addr=$(lvt_addr "$i") tcp=$(lvt_tcp_uri "$i") local=$(lvt_local_uri "$prefix" "$i")"
done
