/* watch.bpf.c: the instant of a watchpoint hit, for kmemd -w and GDB's watch (src/watch/).
 *
 * Rebuild the committed objects (what `make bpf` runs; the kmemd build itself needs no clang):
 *   clang -target bpf -O2 -g -D WATCH_X86_64  -c bpf/watch.bpf.c -o bpf/watch-x86_64.bpf.o
 *   clang -target bpf -O2 -g -D WATCH_AARCH64 -c bpf/watch.bpf.c -o bpf/watch-aarch64.bpf.o
 * Two objects because the context differs: struct bpf_perf_event_data starts with
 * bpf_user_pt_regs_t, which is struct pt_regs on x86_64 (21 words) and struct user_pt_regs on
 * arm64 (31 general registers, sp, pc, pstate: 34 words); include/uapi/linux/bpf_perf_event.h and
 * arch/{x86,arm64}/include/uapi/asm/bpf_perf_event.h.
 *
 * Self-contained like the other programs here: no kernel or libbpf headers, helpers by number
 * (include/uapi/linux/bpf.h): map_lookup_elem 1, ktime_get_ns 5, get_smp_processor_id 8,
 * get_current_pid_tgid 14, get_current_comm 16, get_current_task 35, probe_read_kernel 113 (5.5),
 * ringbuf_output 130, ringbuf_reserve 131, ringbuf_submit 132, ringbuf_discard 133 (5.8).
 *
 * kmemd attaches watch_hit to every breakpoint event it opens (PERF_EVENT_IOC_SET_BPF). At each
 * trap it records, into the ring buffer "snaps": the time (CLOCK_MONOTONIC, the clock of the perf
 * samples, so user space pairs each snapshot with its sample per CPU), the CPU, the task, the
 * registers at the trap, the 8 bytes at the watched address as they are at that instant, and the
 * kernel stack from the trapped sp up to the end of its THREAD_SIZE block (or the first
 * unreadable page). When that stack is not the task's own (the trap ran on an IRQ, softirq or
 * exception stack) and user space gave task_struct's `stack` offset, it also copies the task's
 * whole stack, which holds the interrupted context's pt_regs and frames: what lets GDB's `bt`
 * walk from the interrupt into the task as both stacks were at the trap. It returns 1: perf still writes its own sample, which stays the record of every
 * hit; the kernel does not run this program for traps inside BPF programs (bpf_prog_active), and a
 * full ring buffer drops a snapshot but never a hit.
 */
typedef unsigned char __u8;
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]

#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_RB_NO_WAKEUP 1 /* bpf_ringbuf_output flag (include/uapi/linux/bpf.h) */

#if defined(WATCH_X86_64)
#define NREGS 21
#define SP_INDEX 19 /* r15..r8, rax, rcx, rdx, rsi, rdi, orig_rax, rip, cs, eflags, rsp, ss */
#elif defined(WATCH_AARCH64)
#define NREGS 34
#define SP_INDEX 31 /* x0..x30, sp, pc, pstate */
#else
#error "define WATCH_X86_64 or WATCH_AARCH64"
#endif

/* Largest stack copy: x86_64's and arm64's THREAD_SIZE (16 KiB with 4 KiB pages; arm64 with 16
 * or 64 KiB pages and KASAN can have more, and gets the innermost 16 KiB). */
#define STACK_MAX 16384
#define PAGE 4096

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u32 (*bpf_get_smp_processor_id)(void) = (void *)8;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_get_current_comm)(void *buf, __u32 size) = (void *)16;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, __u64 size, __u64 flags) = (void *)130;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, __u64 size, __u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, __u64 flags) = (void *)132;
static void (*bpf_ringbuf_discard)(void *data, __u64 flags) = (void *)133;

struct bpf_perf_event_data {
	__u64 regs[NREGS];
	__u64 sample_period;
	__u64 addr;
};

/* One snapshot; kept in step with src/watch/snapshot.rs (Snapshot::parse). */
struct snap {
	__u64 time_ns;
	__u64 addr;      /* the watchpoint's address (perf's sample addr for breakpoints) */
	__u64 value;     /* the 8 bytes at addr at the trap (little or big endian as the CPU) */
	__u64 task;      /* the current task_struct */
	__u32 cpu;
	__u32 pid;       /* thread group id */
	__u32 tid;
	__u32 flags;     /* bit 0: value read; bit 1: stack read fully to its block end */
	__u32 nregs;
	__u32 stack_len; /* bytes of stack that follow the registers */
	char comm[16];
	__u64 task_stack;     /* where the task's stack copy (after the trapped one) was */
	__u32 task_stack_len; /* its bytes: 0, or STACK_MAX */
	__u32 pad;
	__u64 regs[NREGS];
	__u8 stack[STACK_MAX]; /* the trapped stack; in a record the task's may follow */
};

#define HDR_SIZE (sizeof(struct snap) - STACK_MAX)
/* A record with both stacks: reserved whole (a ring buffer reservation's size is a constant),
 * the lengths in it say how much is used. */
#define BOTH_SIZE (sizeof(struct snap) + STACK_MAX)

/* task_struct's `stack` member offset (from the kernel's BTF), set by user space before load; 0:
 * unknown, and only the trapped stack is copied. In .rodata, which libbpf freezes: the verifier
 * sees it as a constant. volatile keeps clang from folding the default in. */
const volatile __u64 task_stack_off = 0;

/* Sized by user space before load (bpf_map__set_max_entries; a power of two of pages). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} snaps SEC(".maps");

/* A snapshot is built here (too large for the 512-byte BPF stack), then copied out. Per-CPU
 * array values are at most 32 KiB (PCPU_MIN_UNIT_SIZE): one stack fits, two do not. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, sizeof(struct snap));
} scratch SEC(".maps");

SEC("perf_event")
int watch_hit(struct bpf_perf_event_data *ctx)
{
	__u32 key = 0;
	struct snap *s = bpf_map_lookup_elem(&scratch, &key);
	__u64 sp, len, id, base = 0;
	__u8 *rec;
	int i;

	if (!s)
		return 1;
	s->time_ns = bpf_ktime_get_ns();
	s->addr = ctx->addr;
	s->flags = 0;
	if (bpf_probe_read_kernel(&s->value, 8, (const void *)ctx->addr) == 0)
		s->flags |= 1;
	s->task = bpf_get_current_task();
	s->cpu = bpf_get_smp_processor_id();
	id = bpf_get_current_pid_tgid();
	s->pid = id >> 32;
	s->tid = (__u32)id;
	bpf_get_current_comm(s->comm, sizeof(s->comm));
	s->nregs = NREGS;
#pragma unroll
	for (i = 0; i < NREGS; i++)
		s->regs[i] = ctx->regs[i];

	/* The stack from sp to the end of its THREAD_SIZE-aligned block; where that fails (an IRQ or
	 * exception stack that ends at a guard page sooner), page by page until a page fails. */
	sp = s->regs[SP_INDEX];
	len = STACK_MAX - (sp & (STACK_MAX - 1)); /* 1..STACK_MAX */
	if (bpf_probe_read_kernel(s->stack, len, (const void *)sp) == 0) {
		s->flags |= 2;
	} else {
		__u64 first = PAGE - (sp & (PAGE - 1)); /* 1..PAGE */

		len = 0;
		if (bpf_probe_read_kernel(s->stack, first, (const void *)sp) == 0) {
			len = first;
#pragma unroll
			for (i = 0; i < STACK_MAX / PAGE - 1; i++) {
				if (len + PAGE > STACK_MAX)
					break;
				if (bpf_probe_read_kernel(s->stack + len, PAGE, (const void *)(sp + len)) != 0)
					break;
				len += PAGE;
			}
		}
	}
	if (len > STACK_MAX)
		len = STACK_MAX;
	s->stack_len = len;

	s->task_stack = 0;
	s->task_stack_len = 0;

	/* An interrupt or exception stack: the interrupted task's stack too, whole, in a record
	 * reserved for both. Where that fails, the record without it below. */
	if (task_stack_off &&
	    bpf_probe_read_kernel(&base, 8, (const void *)(s->task + task_stack_off)) == 0 && base &&
	    (sp < base || sp - base >= STACK_MAX)) {
		rec = bpf_ringbuf_reserve(&snaps, BOTH_SIZE, 0);
		if (rec) {
			if (bpf_probe_read_kernel(rec + HDR_SIZE + len, STACK_MAX, (const void *)base) == 0) {
				s->task_stack = base;
				s->task_stack_len = STACK_MAX;
			}
			if (bpf_probe_read_kernel(rec, HDR_SIZE + len, s) == 0) {
				bpf_ringbuf_submit(rec, BPF_RB_NO_WAKEUP);
				return 1;
			}
			bpf_ringbuf_discard(rec, BPF_RB_NO_WAKEUP);
			s->task_stack = 0;
			s->task_stack_len = 0;
		}
	}
	/* BPF_RB_NO_WAKEUP: a wake-up is an irq_work self-IPI, which on arm64 lands between the trap
	 * and the single step over the trapping store and re-arms the watchpoint (a trap storm:
	 * /work/notes/arm64-storm.md). kmemd reads the ring buffer whenever it drains the perf
	 * rings, which wake it or are polled every 20 ms. */
	bpf_ringbuf_output(&snaps, s, HDR_SIZE + len, BPF_RB_NO_WAKEUP);
	return 1;
}

char LICENSE[] SEC("license") = "GPL";
