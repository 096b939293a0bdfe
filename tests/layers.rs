//! The crate's layers, checked: every `crate::`/`super::` path in src/ must point to a module of
//! a lower layer than its own (README, Layout). A new upward or sideways arrow fails here, with
//! the file and line of each, so it is fixed where it is made instead of growing a cycle.
//!
//! The reader is deliberately small: comments, strings and char literals are blanked out, inline
//! `mod name { .. }` blocks are followed so `super::` resolves as rustc does, and `use` brace
//! groups (`use crate::{a, b::c}`) count every head.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Bottom to top. A module may use modules of lower layers only; modules of one layer are
/// siblings and do not use each other.
const LAYERS: &[&[&str]] = &[
    &["sys"],
    &["mem"],
    &["arch"],
    &["dump", "live"],
    &["kernel"],
    &["target"],
    &["rsp", "transport"],
    &["server", "watch"],
    &["cli"],
    &["check"],
    &["app"],
];

fn rank(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// Blanks comments, string and char literals (keeping newlines, so line numbers hold).
fn strip(code: &str) -> String {
    let b: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(b[i]));
                    i += 1;
                }
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !(i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_'))
            && {
                let mut j = i + 1;
                while b.get(j) == Some(&'#') {
                    j += 1;
                }
                b.get(j) == Some(&'"')
            }
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1; // the opening quote
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            for &ch in &b[i..j.min(b.len())] {
                out.push(blank(ch));
            }
            i = j;
        } else if c == '"' {
            let mut j = i + 1;
            while j < b.len() && b[j] != '"' {
                j += if b[j] == '\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            for &ch in &b[i..end] {
                out.push(blank(ch));
            }
            i = end;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{1f}'), not a lifetime ('a).
            let len = if next == Some('\\') {
                b[i + 2..].iter().position(|&ch| ch == '\'').map(|p| p + 3)
            } else if b.get(i + 2) == Some(&'\'') {
                Some(3)
            } else {
                None
            };
            match len {
                Some(n) => {
                    for &ch in &b[i..(i + n).min(b.len())] {
                        out.push(blank(ch));
                    }
                    i += n;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The module path of a file: src/a/b.rs -> [a, b], src/a/mod.rs -> [a], lib.rs -> [].
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().map(String::as_str) == Some("mod") {
        parts.pop();
    }
    if parts == ["lib"] || parts == ["main"] {
        parts.clear();
    }
    parts
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// First segments of the items of a `use` brace group body: `a, b::{c}, d as e` -> a, b, d.
fn group_heads(body: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in body.chars().chain(std::iter::once(',')) {
        match c {
            '{' => {
                depth += 1;
                cur.push(c);
            }
            '}' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => {
                let t = cur.trim().trim_start_matches("r#");
                let head: String = t.chars().take_while(|&c| is_ident(c)).collect();
                if !head.is_empty() {
                    heads.push(head);
                }
                cur.clear();
            }
            _ => cur.push(c),
        }
    }
    heads
}

/// Every path of `file` that leaves its own top-level module: (target top module, line).
fn refs(code: &str, base: &[String], tops: &[String]) -> Vec<(String, usize)> {
    let b: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut stack: Vec<(i32, String)> = Vec::new();
    let mut depth = 0i32;
    let mut line = 1;
    let mut i = 0;
    let word_at = |i: usize| -> String { b[i..].iter().take_while(|&&c| is_ident(c)).collect() };
    while i < b.len() {
        let c = b[i];
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c == '{' {
            depth += 1;
            i += 1;
            continue;
        }
        if c == '}' {
            if stack.last().is_some_and(|(d, _)| *d == depth) {
                stack.pop();
            }
            depth -= 1;
            i += 1;
            continue;
        }
        let boundary = i == 0 || !(is_ident(b[i - 1]) || b[i - 1] == ':' || b[i - 1] == '$');
        if !(boundary && is_ident(c)) {
            i += 1;
            continue;
        }
        let word = word_at(i);
        let after = i + word.chars().count();
        if word == "mod" {
            let mut j = after;
            while j < b.len() && b[j].is_whitespace() {
                j += 1;
            }
            let name = word_at(j);
            let mut k = j + name.chars().count();
            while k < b.len() && b[k].is_whitespace() && b[k] != '\n' {
                k += 1;
            }
            if !name.is_empty() && b.get(k) == Some(&'{') {
                depth += 1;
                stack.push((depth, name));
                i = k + 1;
                continue;
            }
            i = after;
            continue;
        }
        if !(word == "crate" || word == "super" || word == "self") {
            i = after;
            continue;
        }
        // A path: crate/super/self segments, then `::` and a name or a brace group.
        let here: Vec<String> = base
            .iter()
            .cloned()
            .chain(stack.iter().map(|(_, n)| n.clone()))
            .collect();
        let mut cur: Option<Vec<String>> = Some(if word == "crate" { Vec::new() } else { here });
        let mut seg = word.clone();
        let mut j = after;
        loop {
            if seg == "super" {
                cur = cur.and_then(|mut v| v.pop().map(|_| v));
            }
            // expect `::`
            let mut k = j;
            while k < b.len() && b[k].is_whitespace() {
                k += 1;
            }
            if !(b.get(k) == Some(&':') && b.get(k + 1) == Some(&':')) {
                cur = None;
                break;
            }
            k += 2;
            while k < b.len() && b[k].is_whitespace() {
                k += 1;
            }
            let next = word_at(k);
            if next == "super" || next == "self" {
                seg = next.clone();
                j = k + next.chars().count();
                continue;
            }
            j = k;
            break;
        }
        let Some(cur) = cur else {
            i = after;
            continue;
        };
        let heads = if b.get(j) == Some(&'{') {
            let mut d = 0;
            let mut e = j;
            while e < b.len() {
                if b[e] == '{' {
                    d += 1;
                } else if b[e] == '}' {
                    d -= 1;
                    if d == 0 {
                        break;
                    }
                }
                e += 1;
            }
            group_heads(&b[j + 1..e.min(b.len())].iter().collect::<String>())
        } else {
            vec![word_at(j).trim_start_matches("r#").to_string()]
        };
        for h in heads {
            let full: Vec<String> = if h == "self" || h == "super" || h == "crate" {
                cur.clone()
            } else {
                cur.iter().cloned().chain(std::iter::once(h)).collect()
            };
            if let Some(top) = full.first() {
                if tops.contains(top) {
                    out.push((top.clone(), line));
                }
            }
        }
        i = after;
    }
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// (from, to) -> file:line of each reference.
fn edges(src: &Path) -> BTreeMap<(String, String), Vec<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let tops: Vec<String> = {
        let mut t: Vec<String> = files
            .iter()
            .filter_map(|f| module_path(f.strip_prefix(src).ok()?).first().cloned())
            .collect();
        t.sort();
        t.dedup();
        t
    };
    let mut out: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(src).expect("under src");
        let base = module_path(rel);
        let Some(from) = base.first().cloned() else {
            continue;
        };
        let code = strip(&std::fs::read_to_string(f).expect("readable source"));
        for (to, line) in refs(&code, &base, &tops) {
            if to != from {
                out.entry((from.clone(), to))
                    .or_default()
                    .push(format!("{}:{line}", rel.display()));
            }
        }
    }
    out
}

#[test]
fn no_module_uses_a_module_of_its_own_or_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let all = edges(&src);
    assert!(
        all.len() > 20,
        "the reader found only {} edges: it is broken",
        all.len()
    );
    let mut bad = Vec::new();
    for ((from, to), at) in &all {
        match (rank(from), rank(to)) {
            (Some(f), Some(t)) if t < f => {}
            (None, _) | (_, None) => bad.push(format!(
                "{from} -> {to}: a module missing from LAYERS in tests/layers.rs (and the README's \
                 Layout): give it its layer ({})",
                at.join(", ")
            )),
            _ => bad.push(format!("{from} -> {to} ({})", at.join(", "))),
        }
    }
    assert!(
        bad.is_empty(),
        "upward or sideways `use crate::` edges (layers, bottom to top: {}):\n  {}",
        LAYERS.iter().map(|l| l.join("|")).collect::<Vec<_>>().join(" < "),
        bad.join("\n  ")
    );
}

/// The reader itself: paths in comments and strings do not count, groups and `super` do.
#[test]
fn the_reader_finds_paths_as_rustc_resolves_them() {
    let tops: Vec<String> = ["mem", "kernel", "arch", "dump"].map(String::from).to_vec();
    let code = strip(
        "// crate::dump::x in a comment\n\
         use crate::{mem::VirtRead, arch::Arch};\n\
         fn f() { let s = \"crate::dump\"; let c = '{'; }\n\
         mod inner { use super::super::dump::Dump; }\n\
         fn g<'a>(x: &'a u8) { crate::kernel::f(); }\n",
    );
    let base = vec!["kernel".to_string(), "tasks".to_string()];
    let found: Vec<(String, usize)> = refs(&code, &base, &tops);
    assert_eq!(
        found,
        vec![
            ("mem".to_string(), 2),
            ("arch".to_string(), 2),
            ("kernel".to_string(), 4),
            ("kernel".to_string(), 5),
        ],
        "super::super from kernel::tasks::inner is kernel"
    );
    assert_eq!(group_heads("a, b::{c, d}, e as f"), ["a", "b", "e"]);
    assert_eq!(module_path(Path::new("kernel/mod.rs")), ["kernel"]);
}
