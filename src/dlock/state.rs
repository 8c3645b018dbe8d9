//! What a node keeps across restarts: its incarnation and its fencing-token
//! reservation, in a small file written atomically (temporary file, `fsync`,
//! `rename`, `fsync` of the directory) with mode 0600.
//!
//! The file is never reset silently: a token reservation that went backwards would
//! let a restarted arbiter hand out tokens it had already handed out, so a file that
//! does not parse is an error the operator must look at.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// First line of a state file.
const MAGIC: &str = "shmlink-dlock-state 1";

/// Why a state file could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum StateError {
    /// Reading, writing or syncing the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The file exists but is not a state file this version wrote, or was damaged.
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A reservation below the current one was asked for.
    Backwards {
        /// The file.
        path: PathBuf,
        /// The current reservation.
        reserved: u64,
        /// The one asked for.
        asked: u64,
    },
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, op, source } => {
                write!(f, "dlock state file {}: {op}: {source}", path.display())
            }
            Self::Corrupt { path, reason } => write!(
                f,
                "dlock state file {} is damaged ({reason}); it holds the node's fencing \
                 high-water mark, so it is not reset automatically",
                path.display()
            ),
            Self::Backwards {
                path,
                reserved,
                asked,
            } => write!(
                f,
                "dlock state file {}: reservation {asked} is below the current {reserved}",
                path.display()
            ),
        }
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A node's persistent state: opened once per start, which takes the next
/// incarnation.
///
/// # Examples
///
/// ```
/// use shmlink::dlock::NodeState;
/// # let dir = std::env::temp_dir().join(format!("doc-dlock-state-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let path = dir.join("node0.state");
///
/// let mut first = NodeState::open(&path)?;
/// assert_eq!((first.incarnation(), first.reserved()), (1, 0));
/// first.reserve(1024)?; // tokens up to 1024 may now be handed out
/// drop(first);
///
/// let again = NodeState::open(&path)?; // a restart
/// assert_eq!((again.incarnation(), again.reserved()), (2, 1024));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct NodeState {
    path: PathBuf,
    incarnation: u64,
    reserved: u64,
}

impl NodeState {
    /// Opens the state file at `path` (creating it, mode 0600, if absent), takes the
    /// next incarnation and persists it before returning.
    ///
    /// # Errors
    ///
    /// [`StateError::Io`], or [`StateError::Corrupt`] for a file that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::dlock::{NodeState, StateError};
    /// # let dir = std::env::temp_dir().join(format!("doc-dlock-open-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// let path = dir.join("garbage.state");
    /// std::fs::write(&path, "not a state file")?;
    /// assert!(matches!(NodeState::open(&path), Err(StateError::Corrupt { .. })));
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StateError> {
        let path = path.as_ref().to_path_buf();
        let (incarnation, reserved) = match fs::read_to_string(&path) {
            Ok(text) => parse(&text).map_err(|reason| StateError::Corrupt {
                path: path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => (0, 0),
            Err(source) => {
                return Err(StateError::Io {
                    path,
                    op: "read",
                    source,
                });
            }
        };
        let incarnation = incarnation
            .checked_add(1)
            .ok_or_else(|| StateError::Corrupt {
                path: path.clone(),
                reason: "incarnation at its maximum".into(),
            })?;
        let state = Self {
            path,
            incarnation,
            reserved,
        };
        state.write()?;
        Ok(state)
    }

    /// This start's incarnation (1 for the first start; one more at each).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The reservation: every token this node may have handed out is at or below it,
    /// so a restarted node starts its high-water mark here.
    pub fn reserved(&self) -> u64 {
        self.reserved
    }

    /// Persists a new reservation before tokens up to `up_to` are handed out.
    ///
    /// # Errors
    ///
    /// [`StateError::Backwards`] below the current reservation; [`StateError::Io`].
    pub fn reserve(&mut self, up_to: u64) -> Result<(), StateError> {
        if up_to < self.reserved {
            return Err(StateError::Backwards {
                path: self.path.clone(),
                reserved: self.reserved,
                asked: up_to,
            });
        }
        let before = self.reserved;
        self.reserved = up_to;
        if let Err(e) = self.write() {
            self.reserved = before;
            return Err(e);
        }
        Ok(())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&self) -> Result<(), StateError> {
        let io = |op: &'static str| {
            let path = self.path.clone();
            move |source| StateError::Io { path, op, source }
        };
        let body = format!(
            "{MAGIC}\nincarnation {}\nreserved {}\n",
            self.incarnation, self.reserved
        );
        let text = format!("{body}check {:016x}\n", fnv1a(body.as_bytes()));
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create the temporary file"))?;
        file.write_all(text.as_bytes()).map_err(io("write"))?;
        file.sync_all().map_err(io("fsync"))?;
        drop(file);
        fs::rename(&tmp, &self.path).map_err(io("rename"))?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync the directory"))
    }
}

/// 64-bit FNV-1a: detects a torn or hand-edited file (not an attacker).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The incarnation and reservation of a state file's text.
fn parse(text: &str) -> Result<(u64, u64), String> {
    let Some((body, check_line)) = text.trim_end_matches('\n').rsplit_once('\n') else {
        return Err("too short".into());
    };
    let body = format!("{body}\n");
    let check = check_line
        .strip_prefix("check ")
        .and_then(|h| u64::from_str_radix(h, 16).ok())
        .ok_or("no check line")?;
    if check != fnv1a(body.as_bytes()) {
        return Err("check value does not match the contents".into());
    }
    let mut lines = body.lines();
    if lines.next() != Some(MAGIC) {
        return Err(format!("first line is not {MAGIC:?}"));
    }
    let mut field = |name: &str| -> Result<u64, String> {
        lines
            .next()
            .and_then(|l| l.strip_prefix(name))
            .and_then(|v| v.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} line"))
    };
    Ok((field("incarnation")?, field("reserved")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("shmlink-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn incarnations_and_reservations_survive_restarts() {
        let d = dir("restarts");
        let p = d.join("n.state");
        for i in 1..=3u64 {
            let mut s = NodeState::open(&p).unwrap();
            assert_eq!(s.incarnation(), i);
            assert_eq!(s.reserved(), (i - 1) * 100);
            s.reserve(i * 100).unwrap();
        }
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_damaged_file_is_an_error_not_a_reset() {
        let d = dir("damaged");
        let p = d.join("n.state");
        let mut s = NodeState::open(&p).unwrap();
        s.reserve(5000).unwrap();
        drop(s);
        // One digit changed: the check line catches it.
        let text = fs::read_to_string(&p)
            .unwrap()
            .replace("reserved 5000", "reserved 1000");
        fs::write(&p, text).unwrap();
        let e = NodeState::open(&p).unwrap_err();
        assert!(matches!(e, StateError::Corrupt { .. }), "{e}");
        assert!(e.to_string().contains("n.state"), "{e}");
        // Truncated and empty files too.
        for bad in ["", "shmlink-dlock-state 1\n", "\u{0}\u{1}garbage"] {
            fs::write(&p, bad).unwrap();
            assert!(
                matches!(NodeState::open(&p), Err(StateError::Corrupt { .. })),
                "{bad:?}"
            );
        }
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn reservations_never_go_backwards() {
        let d = dir("backwards");
        let mut s = NodeState::open(d.join("n.state")).unwrap();
        s.reserve(10).unwrap();
        assert!(matches!(
            s.reserve(9),
            Err(StateError::Backwards {
                reserved: 10,
                asked: 9,
                ..
            })
        ));
        assert_eq!(s.reserved(), 10);
        fs::remove_dir_all(&d).unwrap();
    }
}
