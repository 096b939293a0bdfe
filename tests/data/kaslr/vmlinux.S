/* A tiny stand-in for an x86_64 vmlinux: the same section and segment shape (see vmlinux.lds),
 * one symbol in each section that matters for KASLR. Built at test time by tests/kaslr_gdb.rs. */
	.section .text, "ax"
	.globl _text
_text:
	.globl start_kernel
	.type start_kernel, @function
start_kernel:
	nop
	ret
	.size start_kernel, . - start_kernel
	.skip 0x100, 0xcc

	.section .rodata, "a"
	.skip 0x40
	.globl linux_banner
	.type linux_banner, @object
linux_banner:
	.asciz "Linux version 0.0.0-kmemd-synthetic\n"
	.size linux_banner, . - linux_banner

	.section .data, "aw"
	.skip 0x80
	.globl jiffies
	.type jiffies, @object
jiffies:
	.quad 0x100000000
	.size jiffies, 8

	/* Per-CPU variables are linked as offsets from 0 (include/asm-generic/vmlinux.lds.h PERCPU_VADDR
	 * with vaddr 0 in arch/x86/kernel/vmlinux.lds.S, x86_64 SMP). */
	.section .data..percpu, "aw"
	.skip 0x20
	.globl current_task
	.type current_task, @object
current_task:
	.quad 0
	.size current_task, 8
	.skip 0x1000 - 0x28

	.section .init.text, "ax"
	.globl x86_64_start_kernel
	.type x86_64_start_kernel, @function
x86_64_start_kernel:
	ret
	.size x86_64_start_kernel, . - x86_64_start_kernel

	.section .bss, "aw", @nobits
	.skip 0x100
	.globl init_stack_end
	.type init_stack_end, @object
init_stack_end:
	.skip 8
	.size init_stack_end, 8
