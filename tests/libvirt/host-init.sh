#!/usr/bin/env bash
# Becomes the "holder" of testbed host I: the process whose namespaces ARE the host.
# setup.sh starts it as
#   ip netns exec PREFIX-hI unshare --mount --uts --cgroup --propagation private -- host-init.sh PREFIX I
# after moving it into the host's own cgroups. It gives the host a hostname and private files,
# then sleeps; libvirtd and every program run "on" the host enter its namespaces (nsenter), so
# restarting libvirtd keeps the host (hostname, mounts, cgroups) as it was.
set -euo pipefail
. "$(dirname "$0")/common.sh"
prefix=$1 i=$2
lvt_check_prefix "$prefix"
d=$(lvt_hdir "$prefix" "$i")
s=$(lvt_state "$prefix")

hostname "$(lvt_name "$i")"
# libvirt's state lives in the host's own directories. The mount points must exist; they are
# created empty where libvirt's packages did not (the machine's own files are not touched).
mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt
mount --bind "$d/etc"   /etc/libvirt
mount --bind "$d/run"   /run/libvirt
mount --bind "$d/lib"   /var/lib/libvirt
mount --bind "$d/cache" /var/cache/libvirt
mount --bind "$d/log"   /var/log/libvirt
# Shared storage: one directory at the same path on every host, so a migrated guest finds its
# disk. (The mount point is created inside the host's own /var/lib/libvirt.)
mkdir -p /var/lib/libvirt/images
mount --bind "$s/images" /var/lib/libvirt/images
# Every host resolves every host (hvJ <-> address); DNS fails at once; the qemu user exists.
mount --bind "$s/etc/hosts"       /etc/hosts
mount --bind "$s/etc/resolv.conf" /etc/resolv.conf
mount --bind "$s/etc/passwd"      /etc/passwd
mount --bind "$s/etc/group"       /etc/group

# `ip netns exec` mounted a fresh sysfs with an empty /sys/fs/cgroup. Mount the cgroup v1
# controllers again: inside our cgroup namespace their root is this host's own cgroup
# ($PREFIX-hI), so libvirt's /machine/... cgroups of two hosts never collide.
if [ -e "$s/cgroups" ]; then
  mount -t tmpfs -o mode=0755 lvt-cgroups /sys/fs/cgroup
  for c in $LVT_CGROUP_CTRLS; do
    mkdir -p "/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
  done
fi
exec sleep infinity
