//! The kernel's monitor commands, written once for every target that knows the kernel (the
//! running kernel, a dump, one process of a dump): `ps`, `sym`, `dmesg`, `lsmod`, `vmcoreinfo`,
//! `kaslr`, with their help. A target hands over what differs ([`KernelView`]: its memory and
//! knowledge, where its module list and VMCOREINFO come from, what it knows of KASLR); the
//! commands and their text are the same for all.

use super::kaslr::{self, Kaslr};
use super::modules::{self, Module};
use super::tasks::Task;
use super::KernelInfo;
use crate::mem::json::json_str;
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
    /// The link-time ranges served from their slid bytes ([`kaslr::LinkAlias`]), if any.
    fn link_alias(&self) -> Option<&kaslr::LinkAlias> {
        None
    }
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
        "kaslr" => {
            let mut t = kaslr::text(&k.kaslr());
            t.push_str(&k.link_alias().map(|a| a.text()).unwrap_or_default());
            Ok(t)
        }
        _ => return None,
    })
}

/// What `sym NAME|ADDR` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SymAnswer {
    /// A symbol's address.
    Address { name: String, addr: u64 },
    /// The symbol at or below an address, and the offset into it.
    Symbol { addr: u64, name: String, offset: u64 },
}

/// `sym NAME|ADDR`: a name's address, or the symbol+offset at an address.
pub fn sym_lookup(l: &KernelInfo, arg: &str) -> Result<SymAnswer, String> {
    let arg = arg.trim();
    if arg.is_empty() {
        return Err("usage: monitor sym NAME|ADDR".into());
    }
    if let Some(addr) = l.symbol(arg) {
        return Ok(SymAnswer::Address {
            name: arg.to_string(),
            addr,
        });
    }
    match crate::mem::parse_addr(arg) {
        Ok(addr) => match l.symbolize(addr) {
            Some((name, offset)) => Ok(SymAnswer::Symbol { addr, name, offset }),
            None => Err(format!("no symbol at or below {addr:#x}")),
        },
        Err(_) => Err(format!(
            "no symbol {arg} (kallsyms without CONFIG_KALLSYMS_ALL has no data symbols; -k vmlinux has all)"
        )),
    }
}

/// `monitor sym NAME|ADDR` text.
pub fn sym_text(l: &KernelInfo, arg: &str) -> Result<String, String> {
    Ok(match sym_lookup(l, arg)? {
        SymAnswer::Address { name, addr } => format!("{name} = {addr:#x}\n"),
        SymAnswer::Symbol {
            addr,
            name,
            offset: 0,
        } => format!("{addr:#x} = {name}\n"),
        SymAnswer::Symbol { addr, name, offset } => format!("{addr:#x} = {name}+{offset:#x}\n"),
    })
}

/// The commands with a JSON form (`kmemd --ps --json`, ...): one object per line, for scripts.
pub const JSON_COMMANDS: &[&str] = &["ps", "lsmod", "sym"];

/// Runs `cmd` in its JSON form when it has one ([`JSON_COMMANDS`]); `None` when it has not.
pub fn run_json(k: &mut dyn KernelView, cmd: &str) -> Option<Result<String, String>> {
    let mut words = cmd.split_whitespace();
    Some(match words.next()? {
        "ps" => k.task_list().map(|t| ps_json(&t)),
        "lsmod" => k.module_list().map(|m| lsmod_json(&m)),
        "sym" => {
            let arg = words.collect::<Vec<_>>().join(" ");
            k.kernel()
                .and_then(|(_, info)| sym_lookup(info, &arg))
                .map(|a| sym_json(&a))
        }
        _ => return None,
    })
}

/// One object per task, the fields of `monitor ps` (addresses as hex strings: JSON numbers lose
/// precision past 2^53).
pub fn ps_json(tasks: &[Task]) -> String {
    let mut out = String::new();
    for t in tasks {
        let cpu = t.cpu.map_or("null".to_string(), |c| c.to_string());
        let _ = writeln!(
            out,
            "{{\"pid\":{},\"tgid\":{},\"ppid\":{},\"state\":\"{}\",\"cpu\":{cpu},\"on_cpu\":{},\"comm\":{},\"task\":\"{:#x}\"}}",
            t.pid,
            t.tgid,
            t.ppid,
            t.state.escape_default(),
            t.on_cpu,
            json_str(&t.comm),
            t.addr
        );
    }
    out
}

/// One object per module: name, base, size.
pub fn lsmod_json(mods: &[Module]) -> String {
    let mut out = String::new();
    for m in mods {
        let _ = writeln!(
            out,
            "{{\"name\":{},\"base\":\"{:#x}\",\"size\":{}}}",
            json_str(&m.name),
            m.base,
            m.size
        );
    }
    out
}

/// The `sym` answer as one object.
pub fn sym_json(a: &SymAnswer) -> String {
    match a {
        SymAnswer::Address { name, addr } => {
            format!("{{\"name\":{},\"address\":\"{addr:#x}\"}}\n", json_str(name))
        }
        SymAnswer::Symbol { addr, name, offset } => format!(
            "{{\"address\":\"{addr:#x}\",\"symbol\":{},\"offset\":{offset}}}\n",
            json_str(name)
        ),
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
                vmlinux: None,
            }
        }
    }

    fn view() -> View {
        let vmci = VmcoreInfo::parse(b"SYMBOL(jiffies)=ffffffff82000000\n");
        View {
            info: KernelInfo::from_dump(&mut FakeMem::default(), &vmci, None, None),
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
    fn json_forms_are_one_object_per_line() {
        let mut v = view();
        let ps = run_json(&mut v, "ps").unwrap().unwrap();
        assert_eq!(
            ps,
            "{\"pid\":1,\"tgid\":1,\"ppid\":0,\"state\":\"S\",\"cpu\":3,\"on_cpu\":true,\"comm\":\"init\",\"task\":\"0xffff888000001000\"}\n"
        );
        assert_eq!(
            run_json(&mut v, "sym jiffies").unwrap(),
            Ok("{\"name\":\"jiffies\",\"address\":\"0xffffffff82000000\"}\n".into())
        );
        let at = SymAnswer::Symbol {
            addr: 0xffff_ffff_8200_0010,
            name: "jiffies".into(),
            offset: 16,
        };
        assert_eq!(
            sym_json(&at),
            "{\"address\":\"0xffffffff82000010\",\"symbol\":\"jiffies\",\"offset\":16}\n"
        );
        assert_eq!(run_json(&mut v, "lsmod").unwrap(), Err("no modules here".into()));
        let mods = [Module {
            name: "a\"b".into(),
            base: 0xffff_ffff_c000_0000,
            size: 4096,
            sections: vec![],
        }];
        assert_eq!(
            lsmod_json(&mods),
            "{\"name\":\"a\\\"b\",\"base\":\"0xffffffffc0000000\",\"size\":4096}\n"
        );
        assert!(run_json(&mut v, "dmesg").is_none());
        for c in JSON_COMMANDS {
            assert!(run_json(&mut v, c).is_some(), "{c}");
        }
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
