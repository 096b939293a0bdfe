//! Issue 20 item 9, in the guests: every watchpoint example of the README and `--help`
//! (tests/common/examples.rs finds them; tests/examples.rs runs the others on the host), as
//! shown, on Debian's amd64 and arm64 kernels. The one literal address of the examples is
//! replaced by a planted variable's; everything else runs as printed. A data symbol that
//! kallsyms lacks (arm64 has no CONFIG_KALLSYMS_ALL) and VMCOREINFO does not name must be refused
//! with the fix (`-k vmlinux`), which the example's note says.

use crate::common::examples;
use crate::guest::{guest, Arch, ARCHES};
use crate::watch::{assert_exact_or_storm, refusal, GuestWatch};
use std::path::Path;
use std::time::Duration;

#[test]
fn watch_examples_run_in_the_guests() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let mut shown: Vec<String> = examples::all(crate::common::KMEMD, &readme)
        .into_iter()
        .filter(|e| e.cmd.split_whitespace().any(|w| w == "-w"))
        .map(|e| e.cmd)
        .collect();
    shown.sort();
    shown.dedup();
    assert!(shown.len() >= 4, "{shown:?}");
    for arch in ARCHES {
        let g = guest(arch);
        let _slots = g.slots();
        let _hostname = g.hostname();
        for cmd in &shown {
            let args = cmd.strip_prefix("kmemd ").expect("a kmemd command");
            let what = format!("{}: {cmd}", arch.name());
            // A data symbol arm64's kallsyms lacks (and VMCOREINFO does not name).
            if args.contains("jiffies_64") && arch == Arch::Aarch64 {
                let e = refusal(g, args);
                assert!(
                    e.contains("jiffies_64") && e.contains("-k vmlinux"),
                    "{what}: {e}"
                );
                continue;
            }
            if args.contains("init_uts_ns+65") {
                // -n 1: the hostname's first byte, written by `hostname`.
                let w = GuestWatch::start(g, args);
                g.sh("hostname example1");
                let d = w.finish(Duration::from_secs(60));
                g.sh("hostname lab");
                assert_eq!(d.code, 0, "{what}: {}", d.text());
                assert!(d.out.contains("init_uts_ns+65"), "{what}: {}", d.text());
            } else if let Some(addr) = args.split_whitespace().find(|w| w.starts_with("0x")) {
                // The literal address stands for any variable: a planted one, written here.
                let plant = g.plant(8);
                let args = args.replace(addr, &format!("{:#x}", plant.addr));
                let w = GuestWatch::start(g, &args);
                plant.bump(3);
                w.wait_hits(3);
                let d = w.stop();
                assert_eq!(d.code, 0, "{what}: {}", d.text());
                // arm64 may trap one store twice (see assert_exact_or_storm).
                assert_exact_or_storm(arch, &what, d.summary_hits(), 3, &d);
            } else if args.contains(" -n ") {
                // Stops by itself after N hits of a variable the kernel touches every tick.
                let n: u64 = args
                    .split_whitespace()
                    .skip_while(|w| *w != "-n")
                    .nth(1)
                    .and_then(|n| n.parse().ok())
                    .expect("-n N");
                let w = GuestWatch::start(g, args);
                let d = w.finish(Duration::from_secs(120));
                assert_eq!(d.code, 0, "{what}: {}", d.text());
                assert_eq!(d.summary_hits(), n, "{what}: {}", d.text());
            } else if args.contains(" -t ") {
                // Stops by itself after -t seconds, one JSON object per hit.
                let w = GuestWatch::start(g, args);
                let d = w.finish(Duration::from_secs(180));
                assert_eq!(d.code, 0, "{what}: {}", d.text());
                assert!(!d.hits().is_empty(), "{what}: no hit in {}", d.text());
            } else {
                panic!("{what}: the lab does not know how to run this example; add it here");
            }
        }
    }
}
