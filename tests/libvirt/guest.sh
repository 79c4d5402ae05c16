#!/usr/bin/env bash
# Defines and starts a boot-sector guest on testbed host I (through the host's unix socket).
# usage: guest.sh PREFIX I NAME busy|idle|dirty [MEM_MIB=16] [VCPUS=1] [QUOTA_PCT]
#   QUOTA_PCT caps each vCPU at that share of one host core (cgroup CPU quota; needs a testbed
#   with cgroups). The cap is in the domain XML, so it moves with the guest on migration.
# Guests are TCG (type "qemu": no KVM needed), machine pc, no NIC, no video, no balloon, one
# read-only virtio disk on the shared image directory (so live migration needs no storage copy
# and libvirt does not call it unsafe).
set -euo pipefail
. "$(dirname "$0")/common.sh"
prefix=$1 i=$2 name=$3 kind=$4 mem=${5:-16} vcpus=${6:-1} quota=${7:-}
lvt_check_prefix "$prefix"
[[ "$name" =~ ^[A-Za-z0-9_.-]{1,64}$ ]] || lvt_die "guest name '$name': use A-Z a-z 0-9 _ . -"
case "$kind" in busy|idle|dirty) ;; *) lvt_die "kind must be busy, idle or dirty, not '$kind'" ;; esac
[[ "$mem" =~ ^[0-9]+$ && "$vcpus" =~ ^[0-9]+$ ]] || lvt_die "MEM_MIB and VCPUS are numbers"
cputune=
if [ -n "$quota" ]; then
  [[ "$quota" =~ ^[0-9]+$ ]] && [ "$quota" -ge 1 ] && [ "$quota" -le 100 ] || lvt_die "QUOTA_PCT 1..100"
  [ -e "$(lvt_state "$prefix")/cgroups" ] || lvt_die "QUOTA_PCT needs a testbed with cgroups"
  cputune="<cputune><period>100000</period><quota>$((quota * 1000))</quota></cputune>"
fi
xml=$(lvt_state "$prefix")/guests/$name.xml
cat > "$xml" <<XML
<domain type="qemu">
  <name>$name</name>
  <memory unit="MiB">$mem</memory>
  <currentMemory unit="MiB">$mem</currentMemory>
  <vcpu placement="static">$vcpus</vcpu>
  $cputune
  <os><type arch="x86_64" machine="pc">hvm</type><boot dev="hd"/></os>
  <clock offset="utc"/>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type="file" device="disk">
      <driver name="qemu" type="raw"/>
      <source file="/var/lib/libvirt/images/$kind.img"/>
      <target dev="vda" bus="virtio"/>
      <readonly/>
    </disk>
    <controller type="usb" model="none"/>
    <video><model type="none"/></video>
    <memballoon model="none"/>
  </devices>
</domain>
XML
uri=$(lvt_local_uri "$prefix" "$i")
virsh -q -c "$uri" define "$xml" >/dev/null
virsh -q -c "$uri" start "$name" >/dev/null
