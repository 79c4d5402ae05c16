/* dirty.img: enter 32-bit protected mode (flat segments) and rewrite guest RAM from 1 MiB to
   15 MiB with a changing non-zero value, forever: a guest whose memory never stops changing, so
   a bandwidth-capped live migration does not converge. */
.code16
.globl _start
_start:
    cli
    inb $0x92, %al
    orb $2, %al
    outb %al, $0x92
    xorw %ax, %ax
    movw %ax, %ds
    lgdt gdt_desc
    movl %cr0, %eax
    orl $1, %eax
    movl %eax, %cr0
    ljmp $0x08, $pm
.code32
pm:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    movl $0x7c00, %esp
    movl $0x5a5a5a5b, %eax
again:
    movl $0x100000, %edi
    movl $((0xF00000 - 0x100000) / 4), %ecx
    addl $0x01010102, %eax
    orl $1, %eax
    cld
    rep stosl
    jmp again
.p2align 3
gdt:
    .quad 0
    .quad 0x00CF9A000000FFFF
    .quad 0x00CF92000000FFFF
gdt_desc:
    .word gdt_desc - gdt - 1
    .long gdt
