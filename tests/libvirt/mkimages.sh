#!/usr/bin/env bash
# Writes the guests' whole "operating systems": raw disks holding one 512-byte boot sector,
# padded (sparsely) to 1 MiB because SeaBIOS will not boot a one-sector disk. SeaBIOS loads
# the sector at 0000:7C00 and jumps there.
#   busy.img   EB FE         jmp $                 spins: under TCG one host core per vCPU
#   idle.img   FB F4 EB FD   sti; hlt; jmp -3      sleeps until the next timer interrupt
# usage: mkimages.sh DIR
set -euo pipefail
dir=${1:?usage: mkimages.sh DIR}
mkdir -p "$dir"
write_sector() {  # NAME OCTAL-ESCAPED-CODE
  local f=$dir/$1.img
  printf "$2" > "$f.tmp"
  truncate -s 510 "$f.tmp"          # zero fill up to the signature
  printf '\125\252' >> "$f.tmp"     # 0x55 0xAA: "bootable"
  [ "$(stat -c %s "$f.tmp")" = 512 ] || { echo "mkimages: $1 is not 512 bytes" >&2; exit 1; }
  truncate -s 1M "$f.tmp"
  mv "$f.tmp" "$f"
  echo "$f"
}
write_sector busy '\353\376'
write_sector idle '\373\364\353\375'
