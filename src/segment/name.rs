//! Segment names and their place in the shared-memory namespace.

use core::fmt;
use std::path::{Path, PathBuf};

use super::error::NameError;

/// Prefix of every shmlink object in `/dev/shm`.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{PREFIX, SegmentName};
///
/// let name = SegmentName::for_uid("orders", 1000)?;
/// assert_eq!(name.os_name(), format!("/{PREFIX}1000.orders"));
/// # Ok::<(), shmlink::segment::NameError>(())
/// ```
pub const PREFIX: &str = "shmlink.";
/// Longest user-visible name, in bytes (the OS name adds the prefix and the uid).
///
/// # Examples
///
/// ```
/// use shmlink::segment::{MAX_NAME_LEN, NameError, SegmentName};
///
/// assert!(SegmentName::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
/// let too_long = SegmentName::new(&"x".repeat(MAX_NAME_LEN + 1));
/// assert_eq!(too_long, Err(NameError::TooLong { len: MAX_NAME_LEN + 1 }));
/// ```
pub const MAX_NAME_LEN: usize = 200;

/// A validated segment name.
///
/// Names are 1 to [`MAX_NAME_LEN`] bytes of `[A-Za-z0-9._-]`, not starting with `.`.
/// The OS object is `/shmlink.<euid>.<name>`: each user has a namespace of its own, so
/// two users' names never collide, and every shmlink segment can be listed by its
/// prefix.
///
/// The uid in the name does **not** stop another local user from *squatting* on it:
/// `/dev/shm` is writable by everyone, so anyone can create `shmlink.<our uid>.<name>`
/// before we do. They still cannot read, write or remove a segment of ours, but the
/// name is then theirs: creating, opening or removing it fails with
/// [`ForeignOwner`](super::OpenError::ForeignOwner), never silently uses their object,
/// and only they (or root) can free it. A name in a directory only we can write
/// ([`SegmentBuilder::dir`](super::SegmentBuilder::dir)) cannot be squatted.
///
/// # Examples
///
/// ```
/// use shmlink::segment::SegmentName;
///
/// let n = SegmentName::new("prices.v1")?;
/// assert_eq!(n.as_str(), "prices.v1");
/// assert!(n.os_name().starts_with("/shmlink."));
/// assert!(SegmentName::new("../etc/passwd").is_err());
/// # Ok::<(), shmlink::segment::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SegmentName {
    name: String,
    os_name: String,
    /// The uid whose namespace the name is in.
    uid: u32,
    /// A private directory holding the segment instead of `/dev/shm`.
    dir: Option<PathBuf>,
}

impl SegmentName {
    /// Validates `name` and places it in the current user's namespace.
    ///
    /// # Errors
    ///
    /// [`NameError`] saying what is wrong with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{NameError, SegmentName};
    ///
    /// let name = SegmentName::new("orders.v2")?;
    /// assert_eq!(name.as_str(), "orders.v2");
    /// let err = SegmentName::new("a b").unwrap_err();
    /// assert_eq!(err, NameError::InvalidByte { byte: b' ', index: 1 });
    /// # Ok::<(), shmlink::segment::NameError>(())
    /// ```
    pub fn new(name: &str) -> Result<Self, NameError> {
        Self::for_uid(name, nix::unistd::geteuid().as_raw())
    }

    /// Validates `name` and places it in the namespace of `uid`.
    ///
    /// # Errors
    ///
    /// [`NameError`] saying what is wrong with it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::SegmentName;
    ///
    /// let mine = SegmentName::for_uid("orders", 1000)?;
    /// let theirs = SegmentName::for_uid("orders", 1001)?;
    /// assert_eq!(mine.as_str(), theirs.as_str());
    /// assert_ne!(mine.os_name(), theirs.os_name()); // one namespace per user
    /// # Ok::<(), shmlink::segment::NameError>(())
    /// ```
    pub fn for_uid(name: &str, uid: u32) -> Result<Self, NameError> {
        validate(name)?;
        Ok(Self {
            name: name.to_owned(),
            os_name: format!("/{PREFIX}{uid}.{name}"),
            uid,
            dir: None,
        })
    }

    /// The same name, placed in the directory `dir` instead of `/dev/shm` (`None`:
    /// back in `/dev/shm`); see [`SegmentBuilder::dir`](super::SegmentBuilder::dir).
    pub(crate) fn in_dir(mut self, dir: Option<&Path>) -> Self {
        self.dir = dir.map(Path::to_path_buf);
        self
    }

    /// The directory holding the segment, if it is not in `/dev/shm`.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The uid whose namespace the name is in: the owner every segment of this name
    /// must have.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::SegmentName;
    ///
    /// assert_eq!(SegmentName::for_uid("orders", 1000)?.uid(), 1000);
    /// assert_eq!(SegmentName::new("orders")?.uid(), nix::unistd::geteuid().as_raw());
    /// # Ok::<(), shmlink::segment::NameError>(())
    /// ```
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// Parses a `/dev/shm` file name (`shmlink.<uid>.<name>`) back into the owner uid
    /// and the name; `None` for anything else.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::SegmentName;
    ///
    /// let (uid, name) = SegmentName::parse_file_name("shmlink.1000.orders").expect("ours");
    /// assert_eq!((uid, name.as_str()), (1000, "orders"));
    /// assert!(SegmentName::parse_file_name("sem.other").is_none());
    /// ```
    pub fn parse_file_name(file_name: &str) -> Option<(u32, SegmentName)> {
        let rest = file_name.strip_prefix(PREFIX)?;
        let (uid, name) = rest.split_once('.')?;
        let uid: u32 = uid.parse().ok()?;
        let parsed = Self::for_uid(name, uid).ok()?;
        Some((uid, parsed))
    }

    /// The name as the user gave it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::SegmentName;
    ///
    /// let name = SegmentName::new("orders")?;
    /// assert_eq!(name.as_str(), "orders");
    /// assert_eq!(name.to_string(), "orders"); // Display prints the same
    /// # Ok::<(), shmlink::segment::NameError>(())
    /// ```
    pub fn as_str(&self) -> &str {
        &self.name
    }

    /// The POSIX shared-memory object name (`/shmlink.<uid>.<name>`).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::SegmentName;
    ///
    /// let name = SegmentName::for_uid("orders", 1000)?;
    /// assert_eq!(name.os_name(), "/shmlink.1000.orders"); // what `shm_open` gets
    /// # Ok::<(), shmlink::segment::NameError>(())
    /// ```
    pub fn os_name(&self) -> &str {
        &self.os_name
    }

    /// Path of the object: in the tmpfs that backs POSIX shared memory on Linux
    /// (`/dev/shm`), or in the directory chosen with
    /// [`SegmentBuilder::dir`](super::SegmentBuilder::dir).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::SegmentName;
    ///
    /// let name = SegmentName::for_uid("orders", 1000)?;
    /// assert_eq!(name.path(), std::path::Path::new("/dev/shm/shmlink.1000.orders"));
    /// # Ok::<(), shmlink::segment::NameError>(())
    /// ```
    pub fn path(&self) -> PathBuf {
        self.dir
            .as_deref()
            .unwrap_or(Path::new("/dev/shm"))
            .join(&self.os_name[1..])
    }
}

fn validate(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong { len: name.len() });
    }
    if name.starts_with('.') {
        return Err(NameError::LeadingDot);
    }
    for (index, &byte) in name.as_bytes().iter().enumerate() {
        if !(byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-')) {
            return Err(NameError::InvalidByte { byte, index });
        }
    }
    Ok(())
}

impl fmt::Debug for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.dir {
            None => write!(f, "SegmentName({:?})", self.os_name),
            Some(_) => write!(f, "SegmentName({:?})", self.path()),
        }
    }
}

impl fmt::Display for SegmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        assert_eq!(SegmentName::new(""), Err(NameError::Empty));
        assert_eq!(SegmentName::new(".x"), Err(NameError::LeadingDot));
        assert_eq!(
            SegmentName::new("a/b"),
            Err(NameError::InvalidByte {
                byte: b'/',
                index: 1
            })
        );
        assert_eq!(
            SegmentName::new(&"x".repeat(MAX_NAME_LEN + 1)),
            Err(NameError::TooLong {
                len: MAX_NAME_LEN + 1
            })
        );
        assert!(SegmentName::new(&"x".repeat(MAX_NAME_LEN)).is_ok());
        assert!(SegmentName::new("A-z_0.9").is_ok());
    }

    #[test]
    fn file_name_round_trip() {
        let n = SegmentName::for_uid("ring.1", 1000).unwrap();
        assert_eq!(n.os_name(), "/shmlink.1000.ring.1");
        let (uid, back) = SegmentName::parse_file_name(&n.os_name()[1..]).unwrap();
        assert_eq!((uid, back), (1000, n));
        assert!(SegmentName::parse_file_name("shmlink.x.y").is_none());
        assert!(SegmentName::parse_file_name("other.1.y").is_none());
        assert!(SegmentName::parse_file_name("shmlink.1.").is_none());
    }
}
