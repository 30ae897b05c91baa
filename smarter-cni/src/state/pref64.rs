//! The NAT64 prefix the agent discovered (`<stateDir>/<network>/pref64`, [`StateDir::pref64`]),
//! so the plugin's ADD uses it with `nat64Prefix: auto` without any network I/O of its own.
//!
//! The file is one line, `<prefix>/96 <source>` (e.g. `2001:db8:64:64::/96 ra`), written
//! atomically (temp file, fsync, rename); absent when nothing was discovered.

use std::fmt;
use std::io::{self, Write as _};
use std::net::Ipv6Addr;

use super::StateDir;

/// Where a discovered NAT64 prefix came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pref64Source {
    /// RFC 8781: the PREF64 option of a router advertisement on the CLAT's uplink.
    Ra,
    /// RFC 7050: the `AAAA` answers for `ipv4only.arpa` from the node's resolvers.
    Dns,
}

impl Pref64Source {
    /// The word in the file: `ra` or `dns`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ra => "ra",
            Self::Dns => "dns",
        }
    }
}

/// A discovered NAT64 prefix (`/96`) and its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pref64Record {
    /// The prefix (its first 96 bits; the rest is zero).
    pub prefix: Ipv6Addr,
    /// Where it came from.
    pub source: Pref64Source,
}

impl fmt::Display for Pref64Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/96 {}", self.prefix, self.source.as_str())
    }
}

impl Pref64Record {
    /// Parses the file's text (see the module docs); `None` when it is not such a line.
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let prefix = words
            .next()?
            .strip_suffix("/96")?
            .parse::<Ipv6Addr>()
            .ok()?;
        let source = match words.next()? {
            "ra" => Pref64Source::Ra,
            "dns" => Pref64Source::Dns,
            _ => return None,
        };
        let host_bits = prefix.to_bits() & u128::from(u32::MAX);
        (words.next().is_none() && host_bits == 0).then_some(Self { prefix, source })
    }
}

impl StateDir {
    /// The discovered prefix the agent recorded, if any (a missing, unreadable or malformed
    /// file is none: the caller falls back to the well-known prefix).
    #[must_use]
    pub fn read_pref64(&self) -> Option<Pref64Record> {
        let text = std::fs::read_to_string(self.pref64()).ok()?;
        let record = Pref64Record::parse(&text);
        if record.is_none() {
            tracing::warn!("ignoring {}: {text:?}", self.pref64().display());
        }
        record
    }

    /// Records `record` atomically, or removes the file for `None`.
    ///
    /// # Errors
    /// When the directory cannot be created or the file written or removed.
    pub fn write_pref64(&self, record: Option<&Pref64Record>) -> io::Result<()> {
        let path = self.pref64();
        let Some(record) = record else {
            return match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        };
        self.create().map_err(|e| e.source)?;
        let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(format!("{record}\n").as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_a_record() {
        let r = Pref64Record {
            prefix: "2001:db8:64:64::".parse().unwrap(),
            source: Pref64Source::Ra,
        };
        assert_eq!(r.to_string(), "2001:db8:64:64::/96 ra");
        assert_eq!(Pref64Record::parse("2001:db8:64:64::/96 ra\n"), Some(r));
        for bad in [
            "",
            "2001:db8:64:64::/64 ra",
            "2001:db8:64:64::1/96 dns",
            "2001:db8:64:64::/96",
            "2001:db8:64:64::/96 mdns",
            "2001:db8:64:64::/96 ra extra",
        ] {
            assert_eq!(Pref64Record::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn written_read_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let d = StateDir::new(tmp.path(), "net");
        assert_eq!(d.read_pref64(), None);
        d.write_pref64(None).unwrap();
        let r = Pref64Record {
            prefix: "64:ff9b:1::".parse().unwrap(),
            source: Pref64Source::Dns,
        };
        d.write_pref64(Some(&r)).unwrap();
        assert_eq!(d.read_pref64(), Some(r));
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("net/pref64")).unwrap(),
            "64:ff9b:1::/96 dns\n"
        );
        d.write_pref64(None).unwrap();
        assert_eq!(d.read_pref64(), None);
    }
}
