/* task.bpf.c: the address of the calling task's task_struct, for kmemd's live task list
 * (src/live/task.rs). Where /proc/kallsyms has no data symbols (no init_task), the walk of the
 * circular task list starts from this task.
 *
 * Rebuild the committed object (what `make bpf` runs):
 *   clang -target bpf -O2 -g -c bpf/task.bpf.c -o bpf/task.bpf.o
 *
 * Self-contained: helpers by number from include/uapi/linux/bpf.h (map_lookup_elem = 1,
 * get_current_task = 35 since Linux 4.8). User space runs current_task with BPF_PROG_TEST_RUN
 * (a raw_tp test run executes in the calling thread) and reads task_out[0].
 */
typedef unsigned int __u32;
typedef unsigned long long __u64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

#define BPF_MAP_TYPE_ARRAY 2
#define ENOENT 2

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static __u64 (*bpf_get_current_task)(void) = (void *)35;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, 4);
	__uint(value_size, 8);
} task_out SEC(".maps");

SEC("raw_tp")
int current_task(void *ctx)
{
	__u32 key = 0;
	__u64 *out = bpf_map_lookup_elem(&task_out, &key);

	if (!out)
		return -ENOENT;
	*out = bpf_get_current_task();
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
