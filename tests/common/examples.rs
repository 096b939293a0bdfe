//! The kmemd command lines the README and `--help` show (issue 20 item 9): each one must run as
//! a test, on the host (dumps, live reads) or in the kernel lab (watchpoints, --check).
//! tests/examples.rs runs the host ones and checks the rest are claimed by a named test;
//! tests/lab/examples.rs runs the watchpoint ones in the guests.

use std::path::Path;

/// One example: the kmemd command as shown (from `kmemd` on, without `sudo`, the shell comment or
/// the `then: ...` note), and where it was shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub cmd: String,
    pub from: &'static str,
}

/// The kmemd command in one shown line, if any: from the word `kmemd` (a path ending in
/// `/kmemd` too) to the end, cut at a shell comment, a closing quote (the command inside
/// `gdb -ex 'target remote | ssh ... kmemd -s -'`), two spaces (the `then: ...` column of
/// --help) or a `(` note.
pub fn command_in(line: &str) -> Option<String> {
    let words: Vec<&str> = line.split(' ').collect();
    // Run as a command: first on the line, or after sudo, &&, a pipe, or ssh's user@host (not an
    // argument of scp or make).
    let at = words.iter().enumerate().position(|(i, w)| {
        let before = if i == 0 { None } else { words.get(i - 1).copied() };
        (*w == "kmemd" || w.ends_with("/kmemd"))
            && before.is_none_or(|b| b.is_empty() || matches!(b, "sudo" | "&&" | "|") || b.contains('@'))
    })?;
    let rest = words[at + 1..].join(" ");
    let mut cmd = format!("kmemd {rest}");
    for cut in [" #", "'", "  ", " ("] {
        if let Some(i) = cmd.find(cut) {
            cmd.truncate(i);
        }
    }
    let cmd = cmd.trim().to_string();
    (cmd != "kmemd").then_some(cmd)
}

/// Every example of `kmemd --help` (its Examples section) and of the README's ```sh blocks.
pub fn all(kmemd: &str, readme: &Path) -> Vec<Example> {
    let help = std::process::Command::new(kmemd)
        .arg("--help")
        .output()
        .expect("kmemd --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let mut out = Vec::new();
    let mut in_examples = false;
    for l in help.lines() {
        if l.starts_with("Examples:") {
            in_examples = true;
            continue;
        }
        if in_examples && l.trim().is_empty() {
            break;
        }
        if in_examples {
            if let Some(cmd) = command_in(l) {
                out.push(Example { cmd, from: "--help" });
            }
        }
    }
    let text = std::fs::read_to_string(readme).expect("README.md");
    let mut in_sh = false;
    for l in text.lines() {
        if l.starts_with("```") {
            in_sh = !in_sh && l.trim() == "```sh";
            continue;
        }
        if in_sh {
            if let Some(cmd) = command_in(l) {
                out.push(Example {
                    cmd,
                    from: "README.md",
                });
            }
        }
    }
    out
}
