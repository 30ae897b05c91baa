//! Where the conformance suite's tests run among the guests (`--conformance`): an `ARCH` entry
//! runs the suite in that guest, an `ARCH:TEST` entry runs one test of it in that guest instead
//! (and not in the `ARCH` ones), so the suite's time can be spread over guests that boot side
//! by side.

/// What one guest runs of the conformance suite.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// The suite, less the tests placed elsewhere ([`Placement::moved`]).
    pub whole: bool,
    /// Tests placed in this guest by name.
    pub named: Vec<String>,
    /// Tests placed by name in other guests.
    pub moved: Vec<String>,
}

impl Placement {
    /// The placement for the guest called any of `names` (Debian's and the platform's name for
    /// its architecture), from the `--conformance` entries (`all` is every guest; `none`, or
    /// no entry naming it, nothing).
    pub fn of(entries: &[String], names: &[&str]) -> Self {
        let mine = |arch: &str| arch == "all" || names.contains(&arch);
        let mut p = Self::default();
        for e in entries {
            match e.split_once(':') {
                Some((arch, test)) if mine(arch) => p.named.push(test.to_owned()),
                Some((_, test)) => p.moved.push(test.to_owned()),
                None => p.whole |= mine(e),
            }
        }
        p.moved.retain(|t| !p.named.contains(t));
        p
    }

    /// Whether the guest runs any of the suite.
    pub fn runs(&self) -> bool {
        self.whole || !self.named.is_empty()
    }

    /// The libtest arguments that select this guest's part (`--exact`: names, not substrings);
    /// `eth`: include the `eth` topology.
    pub fn libtest_args(&self, eth: bool) -> Vec<String> {
        let mut a = Vec::new();
        if self.whole {
            let skipped = self.moved.iter().map(String::as_str);
            let skipped = skipped.chain((!eth).then_some("conformance_eth"));
            for t in skipped {
                a.extend(["--skip".to_owned(), t.to_owned()]);
            }
        } else {
            a.clone_from(&self.named);
        }
        a.push("--exact".to_owned());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(e: &[&str]) -> Vec<String> {
        e.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_default_splits_the_suite_over_arm64_and_armhf() {
        let e = crate::vm::VmArgs::default().conformance;
        let arm64 = Placement::of(&e, &["arm64", "aarch64"]);
        assert!(arm64.whole && arm64.runs());
        assert_eq!(
            arm64.libtest_args(false),
            [
                "--skip",
                "conformance_failover",
                "--skip",
                "conformance_lan",
                "--skip",
                "conformance_eth",
                "--exact"
            ]
        );
        let armhf = Placement::of(&e, &["armhf", "armv7"]);
        assert!(!armhf.whole && armhf.runs());
        assert_eq!(
            armhf.libtest_args(false),
            ["conformance_failover", "conformance_lan", "--exact"]
        );
        let amd64 = Placement::of(&e, &["amd64", "x86_64"]);
        assert!(!amd64.runs());
    }

    #[test]
    fn a_test_placed_in_the_whole_suites_guest_is_not_skipped_there() {
        let e = entries(&["arm64", "arm64:conformance_lan"]);
        let p = Placement::of(&e, &["arm64"]);
        assert!(p.moved.is_empty());
        assert_eq!(p.libtest_args(true), ["--exact"]);
    }

    #[test]
    fn all_and_none() {
        assert!(Placement::of(&entries(&["all"]), &["amd64"]).whole);
        assert!(!Placement::of(&entries(&["none"]), &["amd64"]).runs());
    }
}
