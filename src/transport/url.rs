//! Transport addresses: `shm://NAME`, `unix:///PATH`, `tcp://HOST:PORT`.

use core::fmt;
use std::path::PathBuf;

use super::error::AddressError;

/// Where a transport endpoint lives.
///
/// # Examples
///
/// ```
/// use shmlink::transport::Address;
///
/// assert_eq!(Address::parse("shm://kv")?, Address::Shm("kv".into()));
/// assert_eq!(Address::parse("unix:///tmp/kv.sock")?, Address::Unix("/tmp/kv.sock".into()));
/// assert_eq!(Address::parse("tcp://127.0.0.1:7000")?, Address::Tcp("127.0.0.1:7000".into()));
/// assert_eq!(Address::parse("tcp://[::1]:7000")?.to_string(), "tcp://[::1]:7000");
/// assert!(Address::parse("tcp://nohost").is_err());
/// assert!(Address::parse("unix://relative/path").is_err());
/// assert!(Address::parse("shm://bad/name").is_err());
/// # Ok::<(), shmlink::transport::AddressError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// A shared-memory listener name (segment name rules: `[A-Za-z0-9._-]`, 1–160
    /// bytes, not starting with `.`).
    Shm(String),
    /// An absolute filesystem path of a Unix domain socket.
    Unix(PathBuf),
    /// `HOST:PORT` (a name, an IPv4 address, or an IPv6 address in brackets).
    Tcp(String),
}

/// Longest shm listener name: connection segments are named `NAME.PID.SEQ`, and the
/// whole must stay within the segment name limit.
pub(crate) const MAX_SHM_NAME: usize = 160;

impl Address {
    /// Parses a URL.
    ///
    /// # Errors
    ///
    /// [`AddressError`] saying what is wrong.
    pub fn parse(url: &str) -> Result<Address, AddressError> {
        let bad = |why: &'static str| AddressError {
            url: url.to_string(),
            why,
        };
        if let Some(name) = url.strip_prefix("shm://") {
            let ok = !name.is_empty()
                && name.len() <= MAX_SHM_NAME
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad(
                    "shm names are 1-160 bytes of [A-Za-z0-9._-], not starting with '.'",
                ));
            }
            Ok(Address::Shm(name.to_string()))
        } else if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') || path.len() < 2 {
                return Err(bad("unix:// needs an absolute path (unix:///PATH)"));
            }
            Ok(Address::Unix(PathBuf::from(path)))
        } else if let Some(hp) = url.strip_prefix("tcp://") {
            let (host, port) = hp.rsplit_once(':').ok_or(bad("tcp:// needs HOST:PORT"))?;
            if host.is_empty() || port.parse::<u16>().is_err() || hp.contains('/') {
                return Err(bad("tcp:// needs HOST:PORT with a port in 0-65535"));
            }
            Ok(Address::Tcp(hp.to_string()))
        } else {
            Err(bad("expected shm://NAME, unix:///PATH or tcp://HOST:PORT"))
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Shm(n) => write!(f, "shm://{n}"),
            Address::Unix(p) => write!(f, "unix://{}", p.display()),
            Address::Tcp(hp) => write!(f, "tcp://{hp}"),
        }
    }
}
