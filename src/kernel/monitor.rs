//! The kernel's monitor commands, written once for every target that knows the kernel (the
//! running kernel, a dump, one process of a dump): `ps`, `sym`, `dmesg`, `lsmod`, `vmcoreinfo`,
//! `kaslr`, with their help. A target hands over what differs ([`KernelView`]: its memory and
//! knowledge, where its module list and VMCOREINFO come from, what it knows of KASLR); the
//! commands and their text are the same for all.

use super::kaslr::{self, Kaslr};
use super::modules::{self, Module};
use super::tasks::Task;
use super::KernelInfo;
use crate::mem::VirtRead;
use std::fmt::Write as _;

/// What the commands need from a target.
pub trait KernelView {
    /// The kernel's memory and its knowledge (built on first use), borrowed together.
    fn kernel(&mut self) -> Result<(Box<dyn VirtRead + '_>, &KernelInfo), String>;
    /// Every task.
    fn task_list(&mut self) -> Result<Vec<Task>, String>;
    /// The loaded modules.
    fn module_list(&mut self) -> Result<Vec<Module>, String>;
    /// The kernel's VMCOREINFO as text, headed by a comment line saying where it was read.
    fn vmcoreinfo_text(&mut self) -> Result<String, String>;
    /// What is known of the KASLR slide.
    fn kaslr(&self) -> Kaslr;
}

/// The commands and their one-line help, for `monitor help`.
pub const COMMANDS: &[(&str, &str)] = &[
    (
        "ps",
        "every task: pid, parent, state, CPU, command, task_struct address",
    ),
    (
        "sym NAME|ADDR",
        "a kernel symbol's address, or the symbol at an address",
    ),
    (
        "dmesg",
        "the kernel log (printk ring buffer), as makedumpfile --dump-dmesg prints it",
    ),
    ("lsmod", "loaded modules: base, size and the add-symbol-file line"),
    (
        "vmcoreinfo",
        "the kernel's VMCOREINFO (symbols, offsets, sizes it describes itself)",
    ),
    (
        "kaslr",
        "the KASLR offset and the GDB lines that apply it to every section",
    ),
];

/// Runs `cmd` when it is one of [`COMMANDS`]; `None` when it is not.
pub fn run(k: &mut dyn KernelView, cmd: &str) -> Option<Result<String, String>> {
    let mut words = cmd.split_whitespace();
    Some(match words.next()? {
        "ps" => k.task_list().map(|t| ps_text(&t)),
        "sym" => {
            let arg = words.collect::<Vec<_>>().join(" ");
            k.kernel().and_then(|(_, info)| sym_text(info, &arg))
        }
        "dmesg" => k.kernel().and_then(|(mut mem, info)| {
            if info.vmcoreinfo().is_empty() {
                return Err(
                    "the kernel's VMCOREINFO could not be read (see the log), and dmesg needs its \
                     printk offsets"
                        .into(),
                );
            }
            super::dmesg::dmesg(mem.as_mut(), info.vmcoreinfo()).map_err(String::from)
        }),
        "lsmod" => k.module_list().map(|m| modules::lsmod_text(&m)),
        "vmcoreinfo" => k.vmcoreinfo_text(),
        "kaslr" => Ok(kaslr::text(&k.kaslr())),
        _ => return None,
    })
}

/// `monitor sym NAME|ADDR`: a name's address, or the symbol+offset at an address.
pub fn sym_text(l: &KernelInfo, arg: &str) -> Result<String, String> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err("usage: monitor sym NAME|ADDR".into());
    }
    if let Some(a) = l.symbol(arg) {
        return Ok(format!("{arg} = {a:#x}\n"));
    }
    match crate::mem::parse_addr(arg) {
        Ok(addr) => match l.symbolize(addr) {
            Some((name, 0)) => Ok(format!("{addr:#x} = {name}\n")),
            Some((name, off)) => Ok(format!("{addr:#x} = {name}+{off:#x}\n")),
            None => Err(format!("no symbol at or below {addr:#x}")),
        },
        Err(_) => Err(format!(
            "no symbol {arg} (kallsyms without CONFIG_KALLSYMS_ALL has no data symbols; -k vmlinux has all)"
        )),
    }
}

/// `monitor ps` text.
pub fn ps_text(tasks: &[Task]) -> String {
    let mut out = format!(
        "{:>7} {:>7} {:>2} {:>4} {:<16} {:>18}\n",
        "PID", "PPID", "ST", "CPU", "COMM", "TASK"
    );
    for t in tasks {
        let cpu = t.cpu.map_or("-".to_string(), |c| c.to_string());
        let run = if t.on_cpu { ">" } else { " " };
        let _ = writeln!(
            out,
            "{:>7} {:>7} {:>2} {:>3}{run} {:<16} {:#018x}",
            t.pid, t.ppid, t.state, cpu, t.comm, t.addr
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::testutil::FakeMem;
    use crate::mem::vmcoreinfo::VmcoreInfo;

    /// A kernel of a few symbols and no memory.
    struct View {
        info: KernelInfo,
        tasks: Vec<Task>,
    }

    impl KernelView for View {
        fn kernel(&mut self) -> Result<(Box<dyn VirtRead + '_>, &KernelInfo), String> {
            Ok((Box::new(FakeMem::default()), &self.info))
        }
        fn task_list(&mut self) -> Result<Vec<Task>, String> {
            Ok(self.tasks.clone())
        }
        fn module_list(&mut self) -> Result<Vec<Module>, String> {
            Err("no modules here".into())
        }
        fn vmcoreinfo_text(&mut self) -> Result<String, String> {
            Ok("# test\nOSRELEASE=6.1\n".into())
        }
        fn kaslr(&self) -> Kaslr {
            Kaslr::Dump {
                offset: Some(0x200000),
                percpu_at_zero: false,
            }
        }
    }

    fn view() -> View {
        let vmci = VmcoreInfo::parse(b"SYMBOL(jiffies)=ffffffff82000000\n");
        View {
            info: KernelInfo::from_dump(&mut FakeMem::default(), &vmci, None),
            tasks: vec![Task {
                addr: 0xffff_8880_0000_1000,
                pid: 1,
                tgid: 1,
                ppid: 0,
                state: 'S',
                cpu: Some(3),
                on_cpu: true,
                comm: "init".into(),
            }],
        }
    }

    #[test]
    fn every_listed_command_is_answered_and_nothing_else() {
        let mut v = view();
        for (usage, _) in COMMANDS {
            let name = usage.split_whitespace().next().unwrap();
            assert!(run(&mut v, name).is_some(), "{name}");
        }
        assert!(run(&mut v, "vtop 0").is_none());
        assert!(run(&mut v, "").is_none());
    }

    #[test]
    fn commands_give_their_text() {
        let mut v = view();
        let ps = run(&mut v, "ps").unwrap().unwrap();
        assert!(ps.starts_with("    PID    PPID ST  CPU COMM"), "{ps}");
        assert!(
            ps.contains("      1       0  S   3> init             0xffff888000001000"),
            "{ps}"
        );
        assert_eq!(
            run(&mut v, "sym jiffies").unwrap(),
            Ok("jiffies = 0xffffffff82000000\n".into())
        );
        assert_eq!(
            run(&mut v, "sym").unwrap(),
            Err("usage: monitor sym NAME|ADDR".into())
        );
        let e = run(&mut v, "sym nothing_here").unwrap().unwrap_err();
        assert!(e.starts_with("no symbol nothing_here"), "{e}");
        assert_eq!(run(&mut v, "lsmod").unwrap(), Err("no modules here".into()));
        assert_eq!(
            run(&mut v, "vmcoreinfo").unwrap(),
            Ok("# test\nOSRELEASE=6.1\n".into())
        );
        let k = run(&mut v, "kaslr").unwrap().unwrap();
        assert!(k.starts_with("KASLR offset 0x200000 "), "{k}");
        let d = run(&mut v, "dmesg").unwrap().unwrap_err();
        assert!(d.contains("VMCOREINFO") || d.contains("prb"), "{d}");
        v.info = KernelInfo::default();
        let d = run(&mut v, "dmesg").unwrap().unwrap_err();
        assert!(d.contains("dmesg needs its printk offsets"), "{d}");
    }
}
