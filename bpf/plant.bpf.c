/* plant.bpf.c: test and self-check helper for kmemd (src/live/plant.rs).
 *
 * Rebuild the committed object (what `make bpf` runs; the kmemd build itself needs no clang):
 *   clang -target bpf -O2 -g -c bpf/plant.bpf.c -o bpf/plant.bpf.o
 *
 * Self-contained like bpf/kmem.bpf.c: no kernel or libbpf headers, helpers by number
 * (include/uapi/linux/bpf.h, stable since they were added).
 *
 * The "plant" map holds bytes at a kernel address that user space can learn and write, so tests
 * can compare kmemd's reads and watchpoints against a known truth:
 * - plant_addr (raw_tp, run once by BPF_PROG_TEST_RUN) stores the kernel address of the plant
 *   value into the "plant_addr_out" map. Storing a pointer into a map is a pointer leak that the
 *   verifier allows only with CAP_PERFMON (allow_ptr_leaks), which kmemd needs anyway.
 * - plant_bump (socket filter, because raw_tp test runs reject `repeat` and skb ones accept it)
 *   does exactly one 8-byte kernel store per run: *(u64 *)value += 1.
 * - plant_load (socket filter) does exactly one 8-byte kernel load and no store per run, so a
 *   read watchpoint sees it and a write watchpoint must not.
 * The plant value size is set by user space before load (bpf_map__set_value_size), which is why
 * the maps use key_size/value_size rather than BTF types.
 */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]

#define BPF_MAP_TYPE_ARRAY 2

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 8); /* replaced at load time by Plant::new(len) */
} plant SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 8);
} plant_addr_out SEC(".maps");

SEC("raw_tp")
int plant_addr(void *ctx)
{
	__u32 key = 0;
	void *v = bpf_map_lookup_elem(&plant, &key);
	__u64 *out = bpf_map_lookup_elem(&plant_addr_out, &key);

	if (!v || !out)
		return 1;
	*out = (__u64)v;
	return 0;
}

SEC("socket")
int plant_bump(void *skb)
{
	__u32 key = 0;
	__u64 *v = bpf_map_lookup_elem(&plant, &key);

	if (!v)
		return 1;
	*v += 1; /* one load, one store: the watchpoint tests count the store */
	return 0;
}

SEC("socket")
int plant_load(void *skb)
{
	__u32 key = 0;
	volatile __u64 *v = bpf_map_lookup_elem(&plant, &key);

	if (!v)
		return 1;
	/* volatile: the one load stays even though its value only decides the (never taken) branch */
	return *v == 0xfffffffffffffffeULL ? 2 : 0;
}

char LICENSE[] SEC("license") = "GPL";
