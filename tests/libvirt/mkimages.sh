#!/usr/bin/env bash
# Writes the guests' whole "operating systems": raw disks holding one 512-byte boot sector,
# padded (sparsely) to 1 MiB because SeaBIOS will not boot a one-sector disk. SeaBIOS loads
# the sector at 0000:7C00 and jumps there.
#   busy.img   EB FE         jmp $                 spins: under TCG one host core per vCPU
#   idle.img   FB F4 EB FD   sti; hlt; jmp -3      sleeps until the next timer interrupt
#   dirty.img  (110 bytes)   enables A20, enters 32-bit protected mode with flat segments and
#              rewrites guest RAM from 1 MiB to 15 MiB with a changing non-zero value forever:
#              its memory never stops changing, so a bandwidth-capped live migration does not
#              converge (give it at least 16 MiB). Source: tests/libvirt/dirty.S
#              (as --32 dirty.S && ld -m elf_i386 -Ttext 0x7c00 --oformat binary).
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
write_sector dirty '\372\344\222\014\002\346\222\061\300\216\330\017\001\026\150\174\017\040\300\146\203\310\001\017\042\300\352\037\174\010\000\146\270\020\000\216\330\216\300\216\320\274\000\174\000\000\270\133\132\132\132\277\000\000\020\000\271\000\000\070\000\005\002\001\001\001\203\310\001\374\363\253\353\351\215\266\000\000\000\000\000\000\000\000\000\000\000\000\377\377\000\000\000\232\317\000\377\377\000\000\000\222\317\000\027\000\120\174\000\000'
