//! Reading a guest's console (the `/init` markers, libtest's result lines and the `PROG` lines
//! of `tests/ebpf_programs.rs`) and the tables `vm-test` prints at the end.

use std::{fmt::Write as _, time::Duration};

use super::guest::{GuestTest, MARK};
use crate::image::Arch;

/// One test executable's run in one pass.
pub struct Run {
    name: String,
    exit: Option<i32>,
    /// The guest's uptime at the start and at the end (seconds; older markers carry none).
    up: (Option<f64>, Option<f64>),
    counts: [u64; 3],
    failed: Vec<String>,
}

/// One program's figures.
pub struct Prog {
    name: String,
    fields: Vec<(String, String)>,
}

/// One pass (a JIT setting) over the tests.
pub struct Pass {
    jit: String,
    runs: Vec<Run>,
    progs: Vec<Prog>,
    object: String,
}

/// What one guest reported.
pub struct Guest {
    deb_arch: &'static str,
    info: String,
    passes: Vec<Pass>,
    done: bool,
    module_failures: Vec<String>,
    expected: Vec<String>,
    build: Duration,
    wall: Duration,
}

impl Guest {
    /// Reads the console `lines` of a guest that ran `tests`.
    pub fn parse(
        deb_arch: &'static str,
        lines: &[String],
        tests: &[GuestTest],
        build: Duration,
        wall: Duration,
    ) -> Self {
        let mut g = Self {
            deb_arch,
            info: String::new(),
            passes: Vec::new(),
            done: false,
            module_failures: Vec::new(),
            expected: tests.iter().map(|t| t.name.clone()).collect(),
            build,
            wall,
        };
        for line in lines {
            // A firmware's screen-clearing escapes may precede a marker on its line.
            let l = line.find(MARK).map_or(line.trim(), |i| line[i..].trim());
            if let Some(rest) = l.strip_prefix(&format!("{MARK}-GUEST ")) {
                rest.clone_into(&mut g.info);
            } else if let Some(jit) = l.strip_prefix(&format!("{MARK}-PASS jit=")) {
                g.passes.push(Pass {
                    jit: jit.to_owned(),
                    runs: Vec::new(),
                    progs: Vec::new(),
                    object: String::new(),
                });
            } else if let Some(m) = l.strip_prefix(&format!("{MARK}-MODULE-FAILED ")) {
                g.module_failures.push(m.to_owned());
            } else if l == format!("{MARK}-DONE") {
                g.done = true;
            } else if let Some(pass) = g.passes.last_mut() {
                pass.read(l);
            }
        }
        g
    }

    /// Everything that went wrong, one phrase each (empty: the guest passed).
    pub fn failures(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .module_failures
            .iter()
            .map(|m| format!("insmod {m} failed"))
            .collect();
        if !self.done {
            out.push("the guest did not finish its tests".into());
        }
        if let Some(first) = self.passes.first() {
            for name in &self.expected {
                if !first.runs.iter().any(|r| &r.name == name) {
                    out.push(format!("{name} did not run"));
                }
            }
        }
        for p in &self.passes {
            for r in &p.runs {
                if r.exit != Some(0) {
                    let which = if r.failed.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", r.failed.join(", "))
                    };
                    out.push(format!(
                        "{} (jit={}) exited {}{which}",
                        r.name,
                        p.jit,
                        r.exit.map_or_else(|| "never".into(), |c| c.to_string())
                    ));
                }
            }
        }
        out
    }
}

impl Pass {
    fn read(&mut self, l: &str) {
        // libtest prints `test <name> ... ` before the test's own output, on the same line.
        let l = l.find("PROG ").map_or(l, |i| &l[i..]);
        if let Some(rest) = l.strip_prefix(&format!("{MARK}-RUN ")) {
            let mut words = rest.split_whitespace();
            self.runs.push(Run {
                name: words.next().unwrap_or_default().to_owned(),
                exit: None,
                up: (words.next().and_then(|w| w.parse().ok()), None),
                counts: [0; 3],
                failed: Vec::new(),
            });
        } else if let Some(rest) = l.strip_prefix(&format!("{MARK}-EXIT ")) {
            let mut words = rest.split_whitespace().skip(1);
            if let Some(r) = self.runs.last_mut() {
                r.exit = words.next().and_then(|c| c.parse().ok());
                r.up.1 = words.next().and_then(|w| w.parse().ok());
            }
        } else if let Some(rest) = l.strip_prefix("PROG object ") {
            rest.clone_into(&mut self.object);
        } else if let Some(rest) = l.strip_prefix("PROG ") {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let fields = words
                .filter_map(|w| w.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            self.progs.push(Prog { name, fields });
        } else if let Some(r) = self.runs.last_mut() {
            if let Some(counts) = crate::run::parse_test_result(l) {
                for (t, c) in r.counts.iter_mut().zip(counts) {
                    *t += c;
                }
            } else if let Some(t) = l.strip_prefix("test ")
                && let Some(name) = t.strip_suffix(" ... FAILED")
            {
                r.failed.push(name.to_owned());
            }
        }
    }
}

impl Prog {
    fn get(&self, key: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map_or("?", |(_, v)| v.as_str())
    }
}

/// The closing tables: per guest results, per program figures, times.
pub fn summary(results: &[(Arch, anyhow::Result<Guest>, Duration)]) -> String {
    let mut s = String::from(
        "\n## vm-test results\n\n| guest | pass | test | passed | failed | ignored | exit | s |\n\
         |---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for (arch, r, _) in results {
        let Ok(g) = r else {
            let _ = writeln!(
                s,
                "| {} | – | (guest failed) | | | | |",
                arch.platform().name
            );
            continue;
        };
        for p in &g.passes {
            for run in &p.runs {
                let exit = run.exit.map_or_else(|| "none".into(), |c| c.to_string());
                let secs = match run.up {
                    (Some(a), Some(b)) => format!("{:.0}", b - a),
                    _ => "?".into(),
                };
                let _ = writeln!(
                    s,
                    "| {} | jit={} | {} | {} | {} | {} | {exit} | {secs} |",
                    g.deb_arch, p.jit, run.name, run.counts[0], run.counts[1], run.counts[2]
                );
            }
        }
    }
    s.push_str(
        "\n## eBPF programs per guest (bpf_prog_info; load = BPF_PROG_LOAD wall time)\n\n\
         | guest | jit | program | verified insns | xlated insns | jited bytes | load ms |\n\
         |---|---|---|---:|---:|---:|---:|\n",
    );
    for (_, r, _) in results {
        let Ok(g) = r else { continue };
        for p in &g.passes {
            for prog in &p.progs {
                let load_ms = prog
                    .get("load_us")
                    .parse::<f64>()
                    .map_or_else(|_| "?".into(), |us| format!("{:.1}", us / 1000.0));
                // The JIT on but no machine code: the kernel fell back to the interpreter.
                let jited = match (p.jit.as_str(), prog.get("jited_bytes")) {
                    ("1", "0") => "0 (interpreted)".to_owned(),
                    (_, b) => b.to_owned(),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {jited} | {load_ms} |",
                    g.deb_arch,
                    p.jit,
                    prog.name,
                    prog.get("verified_insns"),
                    prog.get("xlated_insns"),
                );
            }
        }
    }
    s.push_str("\n## guests\n\n| guest | kernel and features | object | build | guest wall | total |\n|---|---|---|---:|---:|---:|\n");
    for (arch, r, total) in results {
        match r {
            Ok(g) => {
                let object = g.passes.first().map_or("", |p| p.object.as_str());
                let _ = writeln!(
                    s,
                    "| {} | {} | {object} | {:.0?} | {:.0?} | {total:.0?} |",
                    g.deb_arch, g.info, g.build, g.wall
                );
            }
            Err(e) => {
                let _ = writeln!(
                    s,
                    "| {} | error: {e:#} | | | | {total:.0?} |",
                    arch.platform().name
                );
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_markers_results_and_program_lines() {
        let console = [
            "c\u{1b}[?7l\u{1b}[2JVMTEST-GUEST kernel=6.1.0 machine=armv7l btf=absent jit_at_boot=0",
            "VMTEST-PASS jit=1",
            "VMTEST-RUN ebpf_programs 3.25",
            "test every_program ... PROG object btf=absent jit=1 parse_and_maps_us=900",
            "PROG smarter_pod verified_insns=12 xlated_insns=10 jited_bytes=0 load_us=1500",
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out",
            "VMTEST-EXIT ebpf_programs 0 45.75",
            "VMTEST-RUN datapath_behaviour",
            "test ebpf::spoofing_is_dropped ... FAILED",
            "test result: FAILED. 11 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out",
            "VMTEST-EXIT datapath_behaviour 101",
            "VMTEST-DONE",
        ]
        .map(String::from);
        let tests: Vec<GuestTest> = ["ebpf_programs", "datapath_behaviour", "ebpf_upgrade"]
            .iter()
            .map(|n| GuestTest {
                name: (*n).into(),
                path: String::new(),
                args: vec![],
                jit_off: None,
                env: vec![],
            })
            .collect();
        let g = Guest::parse("armhf", &console, &tests, Duration::ZERO, Duration::ZERO);
        assert_eq!(
            g.failures(),
            [
                "ebpf_upgrade did not run",
                "datapath_behaviour (jit=1) exited 101: ebpf::spoofing_is_dropped"
            ]
        );
        let table = summary(&[(Arch::Armv7, Ok(g), Duration::ZERO)]);
        assert!(
            table.contains("| armhf | jit=1 | ebpf_programs | 1 | 0 | 0 | 0 | 42 |"),
            "{table}"
        );
        assert!(
            table.contains("| armhf | jit=1 | datapath_behaviour | 11 | 1 | 0 | 101 | ? |"),
            "{table}"
        );
        assert!(
            table.contains("| armhf | 1 | smarter_pod | 12 | 10 | 0 (interpreted) | 1.5 |"),
            "{table}"
        );
    }
}
