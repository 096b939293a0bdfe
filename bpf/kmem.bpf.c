/* kmem.bpf.c: kmemd's live kernel memory reader (src/live/bpf.rs).
 *
 * Rebuild the committed object (what `make bpf` runs; the kmemd build itself needs no clang):
 *   clang -target bpf -O2 -g -c bpf/kmem.bpf.c -o bpf/kmem.bpf.o
 *
 * Self-contained: no kernel or libbpf headers; helpers by number and flags by value from
 * include/uapi/linux/bpf.h (map_lookup_elem = 1, probe_read_kernel = 113 since Linux 5.5,
 * BPF_F_MMAPABLE = 1 << 10 since Linux 5.5).
 *
 * User space runs kmem_read with BPF_PROG_TEST_RUN, ctx = { u64 addr, u64 len }. The bytes land
 * at the start of the single value of kmem_buf, which user space has mmap'ed (no lookup syscall
 * per chunk), and the program returns bpf_probe_read_kernel's result, which the test run reports
 * as retval: 0, or a negative errno (-EFAULT for an unmapped kernel address, -ERANGE for a user
 * or non-canonical one). A fault anywhere zero-fills the whole destination, so user space must
 * never trust the buffer after a non-zero retval.
 *
 * The chunk size is chosen by user space at open (src/live/bpf.rs KernelReader::open_with_chunk):
 * before loading it sets kmem_buf's value size and kmem_chunk (in .rodata) to the same number.
 * libbpf freezes .rodata, so the verifier reads kmem_chunk as a known constant and checks the
 * bound on len against the value size it was given; the defaults below are 4 MiB, the
 * largest value an array map takes (KMALLOC_MAX_SIZE with 4 KiB pages, kernel/bpf/arraymap.c).
 */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]

#define BPF_MAP_TYPE_ARRAY 2
#define BPF_F_MMAPABLE (1U << 10)
#define KMEM_CHUNK (4U << 20) /* default 4 MiB: ~26 GB/s per reference/live-reads.md */
#define EINVAL 22
#define ENOENT 2

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *unsafe_ptr) = (void *)113;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, KMEM_CHUNK);
	__uint(map_flags, BPF_F_MMAPABLE);
} kmem_buf SEC(".maps");

/* The value size of kmem_buf, set by user space before load (the only .rodata variable: user
 * space checks .rodata is exactly 4 bytes). volatile keeps clang from folding the default in. */
const volatile __u32 kmem_chunk = KMEM_CHUNK;

SEC("raw_tp")
int kmem_read(__u64 *ctx)
{
	__u32 key = 0;
	__u64 addr = ctx[0];
	__u64 len = ctx[1];
	void *dst = bpf_map_lookup_elem(&kmem_buf, &key);

	if (!dst)
		return -ENOENT;
	if (len == 0 || len > kmem_chunk)
		return -EINVAL;
	return bpf_probe_read_kernel(dst, len, (const void *)addr);
}

char LICENSE[] SEC("license") = "GPL";
