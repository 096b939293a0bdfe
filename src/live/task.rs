//! The running kernel's `current` task as BPF sees it (bpf/task.bpf.c): the task_struct of the
//! thread that runs the BPF test run, i.e. this process. Where /proc/kallsyms lacks `init_task`,
//! the live task walk starts here (any task is on, or leads to, the circular task list).

use crate::sys::clib::BpfObject;

static TASK_OBJ: &[u8] = include_bytes!("../../bpf/task.bpf.o");

/// Address of the calling thread's task_struct. Needs root (CAP_BPF and CAP_PERFMON).
pub fn current_task() -> Result<u64, String> {
    let mut obj = BpfObject::open_mem("task", TASK_OBJ)?;
    obj.load()?;
    let out = obj.map_handle("task_out")?;
    let prog = obj.program("current_task")?;
    drop(obj);
    let run = prog
        .test_run(&[0u8; 8], &[], 0)
        .map_err(|e| format!("running the current_task BPF program failed: {e}"))?;
    if run.retval != 0 {
        return Err(format!(
            "current_task could not look up its map (retval {})",
            run.retval as i32
        ));
    }
    let mut raw = [0u8; 8];
    out.lookup(0, &mut raw)
        .map_err(|e| format!("reading the current task back failed: {e}"))?;
    // The program stored a native-endian u64 (BPF runs in the host's byte order).
    let addr = u64::from_ne_bytes(raw);
    if addr < crate::arch::Arch::host().kernel_space_start() {
        return Err(format!(
            "current_task reported {addr:#x}, which is not a kernel address"
        ));
    }
    Ok(addr)
}
