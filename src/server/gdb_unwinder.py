# kmemd's GDB unwinder for Linux interrupt entries (x86_64 and arm64), served by
# `monitor gdb-unwinder`. Load it into the GDB that talks to kmemd with:
#
#   python exec(gdb.execute("monitor gdb-unwinder", to_string=True))
#
# Why: the kernel's interrupt entry is assembly without DWARF unwind information (the kernel
# unwinds it with ORC on x86_64 and frame records on arm64), and it switches from the task's
# stack to the CPU's IRQ stack. GDB's own unwinders stop there, so `bt` at a hit in an interrupt
# ended at the entry. This teaches GDB the two steps it misses:
#
# 1. The stack switch. x86_64: the entry's C function (sysvec_*, common_interrupt, ...) moved
#    rsp to the IRQ stack's top after saving the task's rsp there (call_on_stack in
#    arch/x86/include/asm/irq_stack.h): the frame whose sp is one word below a page end, that
#    word a pointer to another stack, and whose code restores it with `pop %rsp`. Its caller is
#    the assembly entry stub, found on the task's stack as the return address followed by a
#    struct pt_regs. arm64: call_on_irq_stack (arch/arm64/kernel/entry.S) left a frame record
#    at x29 on the task's stack and, back from the handler, restores sp by `mov sp, x29`; its
#    caller is that record's.
# 2. The assembly entry stub (asm_sysvec_* on x86_64, el1h_64_irq and kin on arm64), which
#    called the C handler with sp pointing at the interrupted context's struct pt_regs, and
#    returns to a jump (`jmp error_return`, `b ret_to_kernel`). Its caller is the interrupted
#    context: every register from that pt_regs.
#
# At a kmemd watch/break stop both stacks are kmemd's copies from the instant of the hit.
#
# GDB refuses a caller whose frame address lies below its callee's ("previous frame inner to
# this frame"), which a stack switch looks like when the task's stack sits below the IRQ stack
# in memory. It skips that check where the callee is an inlined frame, as x86_64's
# instr_sysvec_* is in sysvec_*: so the frame that switched stacks is identified by its sp on
# the task's stack, and every frame from it on lies on the task's stack in order. On arm64 the
# switch is the assembly call_on_irq_stack, which GDB compares with its callee on the IRQ stack;
# there the walk goes on where the task's stack lies above the IRQ stack (the IRQ stacks are
# allocated first, at boot).

import struct
import traceback

import gdb
from gdb.unwinder import Unwinder, register_unwinder

_KERNEL = 0xFFFF800000000000
_M64 = (1 << 64) - 1
_PAGE = 4096


def _read(addr, n):
    return bytes(gdb.selected_inferior().read_memory(addr, n))


def _u64(addr):
    return struct.unpack("<Q", _read(addr, 8))[0]


def _reg(pending, name):
    return int(pending.read_register(name)) & _M64


class _FrameId:
    # gdb.Values: GDB 13 takes a frame id's sp and pc from nothing else.
    def __init__(self, sp, pc):
        self.sp = gdb.Value(sp & _M64)
        self.pc = gdb.Value(pc & _M64)


def _caller(pending, frame_sp, pc, regs):
    """UnwindInfo for `pending` (identified by frame_sp and pc) whose caller has `regs`."""
    info = pending.create_unwind_info(_FrameId(frame_sp, pc))
    for name, value in regs:
        # An 8-byte integer: GDB takes a saved register's bytes (it checks only their size).
        info.add_saved_register(name, gdb.Value(value & _M64))
    return info


# x86_64 struct pt_regs, in order (arch/x86/include/asm/ptrace.h).
_X86_PT_REGS = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_ax "
                "rip cs eflags rsp ss").split()
_X86_PT_SIZE = 8 * len(_X86_PT_REGS)
_X86_THREAD_SIZE = 16384
_X86_RESTORED = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi rip rsp").split()


def _x86_pt_regs(at, words=None):
    """The registers of a kernel-mode struct pt_regs at `at`, or None when it is not one."""
    if words is None:
        words = struct.unpack("<21Q", _read(at, _X86_PT_SIZE))
    r = dict(zip(_X86_PT_REGS, words))
    sane = (r["cs"] == 0x10 and r["ss"] in (0, 0x18) and r["eflags"] & 2
            and r["eflags"] >> 22 == 0 and r["rip"] >= 0xFFFFFFFF80000000
            and at + _X86_PT_SIZE <= r["rsp"] <= at + _X86_PT_SIZE + 16)
    return r if sane else None


# arm64 struct pt_regs starts with struct user_pt_regs: x0..x30, sp, pc, pstate.
_A64_NAMES = ["x%d" % i for i in range(31)] + ["sp", "pc", "pstate"]


def _a64_pt_regs(at):
    words = struct.unpack("<34Q", _read(at, 8 * 34))
    r = dict(zip(_A64_NAMES, words))
    sane = (r["pstate"] & 0xF in (4, 5) and r["pstate"] >> 32 == 0
            and r["pc"] >= _KERNEL and at + 8 * 34 <= r["sp"] <= at + 1024)
    return r if sane else None


def _unchanged(pending, names):
    """(name, value) of the registers the caller shares with `pending` that GDB knows here.
    GDB takes a register no unwinder saved as lost, and arm64 needs the pointer authentication
    masks in every frame to strip return addresses."""
    out = []
    for name in names:
        try:
            out.append((name, _reg(pending, name)))
        except (gdb.error, ValueError):
            pass
    return out


_A64_SHARED = ["x%d" % i for i in range(19, 29)] + ["pauth_dmask", "pauth_cmask"]


def _a64_strip(addr):
    """A kernel return address without its pointer authentication code."""
    return addr | 0xFFFF000000000000 if addr >> 55 & 1 else addr


class KmemdIrqUnwinder(Unwinder):
    def __init__(self):
        super().__init__("kmemd-irq")
        self.warned = False

    def __call__(self, pending):
        try:
            arch = pending.architecture().name()
            if arch == "i386:x86-64":
                return self.x86_64(pending)
            if arch.startswith("aarch64"):
                return self.aarch64(pending)
        except gdb.error:
            pass  # not the frame looked for: unreadable words, or registers GDB lacks
        except Exception as e:  # a bug here must not break every backtrace: say it once
            if not self.warned:
                self.warned = True
                line = traceback.extract_tb(e.__traceback__)[-1].lineno
                print("kmemd unwinder: %r at line %d (interrupt frames are left to GDB)" % (e, line))
        return None

    def x86_64(self, pending):
        pc, sp = _reg(pending, "rip"), _reg(pending, "rsp")
        if pc < 0xFFFFFFFF80000000:
            return None
        # 2: the entry stub, returned to at its `jmp error_return`, sp at the pt_regs.
        if _read(pc, 1)[0] in (0xE9, 0xEB):
            r = _x86_pt_regs(sp)
            if r is not None:
                return _caller(pending, sp, pc, [(n, r[n]) for n in _X86_RESTORED])
        # 1: the IRQ stack's top holds the task's rsp; the code restores it by `pop %rsp`
        # after the call it is in (call_on_stack).
        if (sp + 8) % _PAGE:
            return None
        task_sp = _u64(sp)
        if task_sp < _KERNEL or task_sp % 8 or abs(task_sp - sp) < 0x4000:
            return None
        # Returned to at the `pop %rsp` (from irq_exit_rcu, say) or at a call before it.
        code = _read(pc, 48)
        if code[0] != 0x5C and not any(
            code[i] == 0xE8 and code[i + 5] == 0x5C for i in range(len(code) - 5)
        ):
            return None
        # The entry stub's return address, then its pt_regs, a few words up the task's stack
        # (which ends at a THREAD_SIZE, 16 KiB, boundary: the pt_regs is near its end).
        stack_end = (task_sp | (_X86_THREAD_SIZE - 1)) + 1
        window = _read(task_sp, min(512 + _X86_PT_SIZE, stack_end - task_sp))
        words = struct.unpack("<%dQ" % (len(window) // 8), window)
        for i in range(len(words) - 21):
            ret = words[i]
            if ret < 0xFFFFFFFF80000000:
                continue
            regs_at = task_sp + 8 * (i + 1)
            if _x86_pt_regs(regs_at, words[i + 1:i + 22]) is None:
                continue
            return _caller(pending, task_sp, pc, [("rip", ret), ("rsp", regs_at)])
        return None

    def aarch64(self, pending):
        pc, sp = _reg(pending, "pc"), _reg(pending, "sp")
        if pc < _KERNEL:
            return None
        insns = struct.unpack("<4I", _read(pc, 16))
        insn = insns[0]
        # 1: call_on_irq_stack, returned to just before `mov sp, x29` (some kernels mask
        # interrupts first): the frame record at x29.
        if 0x910003BF in insns:
            fp = _reg(pending, "x29")
            if fp < _KERNEL or fp % 16:
                return None
            prev_fp, lr = _u64(fp), _u64(fp + 8)
            if lr < _KERNEL and not lr >> 55 & 1:
                return None
            regs = [("pc", _a64_strip(lr)), ("sp", fp + 16), ("x29", prev_fp), ("x30", lr)]
            return _caller(pending, sp, pc, regs + _unchanged(pending, _A64_SHARED))
        # 2: the entry stub, returned to at its `b ret_to_kernel`, sp at the pt_regs.
        if insn & 0xFC000000 == 0x14000000:
            r = _a64_pt_regs(sp)
            if r is not None:
                regs = [("x%d" % i, r["x%d" % i]) for i in range(31)]
                regs += [("sp", r["sp"]), ("pc", _a64_strip(r["pc"]))]
                return _caller(pending, sp, pc, regs + _unchanged(pending, _A64_SHARED[-2:]))
        return None


register_unwinder(None, KmemdIrqUnwinder(), replace=True)
gdb.invalidate_cached_frames()
print("kmemd: interrupt entry unwinder loaded")
