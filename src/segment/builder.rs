//! Configuring a segment and creating or opening it by name ([`SegmentBuilder`]).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;

use super::create::create_once;
use super::error::{CreateError, NameError, OpenError, OsError};
use super::handle::Segment;
use super::header::{Expect, HEADER_SIZE, HeaderSpec, Kind, TypeName};
use super::name::SegmentName;
use super::open::{Backoff, IfStale, open_error, open_validated};
use super::stale::remove_stale_named;
use super::sys;

/// Largest payload a segment may have (1 TiB).
///
/// # Examples
///
/// ```
/// use shmlink::segment::{CreateError, MAX_PAYLOAD, Segment};
///
/// # let name = format!("doc-seg-max-payload-{}", std::process::id());
/// let err = Segment::builder(&name).payload_len(MAX_PAYLOAD + 1).create().unwrap_err();
/// assert_eq!(err, CreateError::TooLarge { requested: MAX_PAYLOAD + 1, max: MAX_PAYLOAD });
/// ```
pub const MAX_PAYLOAD: u64 = 1 << 40;

/// Default time `open` waits for a creator to publish, or for a cleanup to finish.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{DEFAULT_OPEN_TIMEOUT, Segment};
///
/// // Give a creator that is known to initialise slowly more time.
/// let builder = Segment::builder("slow-init").timeout(DEFAULT_OPEN_TIMEOUT * 5);
/// # drop(builder);
/// ```
pub const DEFAULT_OPEN_TIMEOUT: Duration = Duration::from_secs(2);

/// Largest file a segment may have: the header plus [`MAX_PAYLOAD`].
pub(super) const MAX_FILE: u64 = MAX_PAYLOAD + HEADER_SIZE as u64;

/// A zero-length object that nobody has locked is only judged abandoned after this
/// long: its creator may be between `shm_open` and `flock`.
pub(super) const EMPTY_GRACE: Duration = Duration::from_secs(5);

/// How [`SegmentBuilder::open_or_create`] obtained the segment.
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Disposition, Segment};
///
/// # let name = format!("doc-seg-disposition-{}", std::process::id());
/// let builder = Segment::builder(&name).unlink_on_drop(true);
/// let (_first, how) = builder.open_or_create()?;
/// assert_eq!(how, Disposition::Created);
/// let (_second, how) = builder.open_or_create()?;
/// assert_eq!(how, Disposition::Opened);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// This call created it.
    Created,
    /// It existed and was opened.
    Opened,
    /// A **stale** object of the name (a process attached to it died without
    /// detaching) matched what was asked for (kind, type, size, and the object's own
    /// check of its contents), and was taken over as it is: what it holds (committed
    /// messages, lock state, counters) is kept, and the roles of dead participants are
    /// reclaimed by the object's usual recovery. This process is now its creator of
    /// record ([`Segment::is_creator`]).
    Resumed,
    /// A stale object of the name did not validate (another kind, type or size, a
    /// creator that died before publishing it, or contents its object refused), or
    /// the builder asked for [`OnStale::Replace`]: it was removed and a fresh one
    /// created in its place.
    Replaced,
}

/// What [`SegmentBuilder::open_or_create`] does with a **stale** segment of the name
/// (see [`SegmentBuilder::open`]).
///
/// # Examples
///
/// ```
/// use shmlink::segment::{OnStale, Segment};
///
/// // Start from a fresh object even if a crashed run left one behind.
/// let builder = Segment::builder("fresh-every-run").on_stale(OnStale::Replace);
/// # drop(builder);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnStale {
    /// Take it over as it is when it validates ([`Disposition::Resumed`]), else
    /// replace it ([`Disposition::Replaced`]). The default: a consumer restarted after
    /// a crash still receives what was committed to it.
    #[default]
    Resume,
    /// Always remove it and create a fresh one ([`Disposition::Replaced`]).
    Replace,
}

/// Configures and then creates or opens a named [`Segment`].
///
/// # Examples
///
/// ```
/// use shmlink::segment::{Disposition, Kind, Segment};
///
/// # let name = format!("doc-builder-{}", std::process::id());
/// let builder = Segment::builder(&name).kind(Kind::Raw).payload_len(4096).unlink_on_drop(true);
/// let (created, how) = builder.open_or_create()?;
/// assert_eq!(how, Disposition::Created);
/// let opened = builder.open()?; // e.g. in another process
/// assert_eq!(opened.payload_len(), 4096);
/// # drop(opened);
/// # drop(created);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct SegmentBuilder {
    name: String,
    kind: Option<Kind>,
    fingerprint: Option<u64>,
    type_name: Option<TypeName>,
    payload_len: Option<u64>,
    timeout: Duration,
    unlink_on_drop: bool,
    dir: Option<PathBuf>,
    on_stale: OnStale,
}

impl SegmentBuilder {
    /// The name as given (not yet validated), for errors that name the segment.
    pub(crate) fn raw_name(&self) -> &str {
        &self.name
    }

    /// A builder for the segment `name` (validated when used, see [`SegmentName`]).
    /// Defaults: kind [`Kind::Raw`], fingerprint 0, payload 0 bytes, timeout
    /// [`DEFAULT_OPEN_TIMEOUT`], no unlink on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Kind, SegmentBuilder};
    ///
    /// # let name = format!("doc-seg-builder-new-{}", std::process::id());
    /// let segment = SegmentBuilder::new(&name).unlink_on_drop(true).create()?;
    /// assert_eq!(segment.kind(), Some(Kind::Raw));
    /// assert_eq!(segment.payload_len(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            kind: None,
            fingerprint: None,
            type_name: None,
            payload_len: None,
            timeout: DEFAULT_OPEN_TIMEOUT,
            unlink_on_drop: false,
            dir: None,
            on_stale: OnStale::Resume,
        }
    }

    /// The kind of object the segment holds; checked on open.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Kind, OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-kind-{}", std::process::id());
    /// let _seg = Segment::builder(&name).kind(Kind::Typed).unlink_on_drop(true).create()?;
    /// let err = Segment::builder(&name).kind(Kind::Raw).open().unwrap_err();
    /// assert!(matches!(err, OpenError::WrongKind { expected: Kind::Raw, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn kind(mut self, kind: Kind) -> Self {
        self.kind = Some(kind);
        self
    }

    /// The payload's type fingerprint; checked on open.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-fingerprint-{}", std::process::id());
    /// let _seg = Segment::builder(&name).fingerprint(0xfeed).unlink_on_drop(true).create()?;
    /// let err = Segment::builder(&name).fingerprint(0xbeef).open().unwrap_err();
    /// assert!(matches!(err, OpenError::TypeMismatch { expected: 0xbeef, found: 0xfeed, .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn fingerprint(mut self, fingerprint: u64) -> Self {
        self.fingerprint = Some(fingerprint);
        self
    }

    /// The payload type's name, recorded at creation and named in a fingerprint
    /// mismatch (the typed objects set their own).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-type-name-{}", std::process::id());
    /// let b = Segment::builder(&name);
    /// let _seg = b.clone().fingerprint(1).type_name("app::Old").unlink_on_drop(true).create()?;
    /// let err = b.fingerprint(2).type_name("app::New").open().unwrap_err();
    /// assert!(err.to_string().contains("holds `app::Old`"), "{err}");
    /// assert!(err.to_string().contains("expected `app::New`"), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn type_name(mut self, name: &str) -> Self {
        self.type_name = Some(TypeName::new(name));
        self
    }

    /// Payload length: the size to create, and (when set) the size required on open.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-payload-len-{}", std::process::id());
    /// let seg = Segment::builder(&name).payload_len(4096).unlink_on_drop(true).create()?;
    /// assert_eq!(seg.payload_len(), 4096);
    /// // An opener that sets a length accepts only that length.
    /// let err = Segment::builder(&name).payload_len(8192).open().unwrap_err();
    /// assert!(matches!(err, OpenError::SizeMismatch { what: "payload length", .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn payload_len(mut self, len: u64) -> Self {
        self.payload_len = Some(len);
        self
    }

    /// How long `open` waits for the creator to publish (and for a cleanup holding the
    /// segment to finish) before it gives up.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-timeout-{}", std::process::id());
    /// let builder = Segment::builder(&name).timeout(Duration::from_millis(100));
    /// // A missing segment fails at once; the timeout bounds waits for a slow creator.
    /// assert_eq!(builder.open().unwrap_err(), OpenError::NotFound);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Whether the creating handle removes the name when dropped. Handles that opened
    /// an existing segment never unlink on drop.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-unlink-on-drop-{}", std::process::id());
    /// let seg = Segment::builder(&name).unlink_on_drop(true).create()?;
    /// drop(seg);
    /// assert_eq!(Segment::builder(&name).open().unwrap_err(), OpenError::NotFound);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn unlink_on_drop(mut self, yes: bool) -> Self {
        self.unlink_on_drop = yes;
        self
    }

    /// What [`open_or_create`](Self::open_or_create) does with a stale segment of the
    /// name: resume it if it validates (the default), or replace it.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Disposition, OnStale, Segment};
    ///
    /// # let name = format!("doc-seg-on-stale-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(64).on_stale(OnStale::Replace);
    /// let (seg, how) = builder.open_or_create()?; // nothing stale here
    /// assert_eq!(how, Disposition::Created);
    /// # seg.unlink()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn on_stale(mut self, on_stale: OnStale) -> Self {
        self.on_stale = on_stale;
        self
    }

    /// The timeout set by [`timeout`](Self::timeout).
    pub(crate) fn wait_limit(&self) -> Duration {
        self.timeout
    }

    /// Places the segment in the directory `dir`, as the file
    /// `dir/shmlink.<euid>.<name>`, instead of in `/dev/shm`: the way out of
    /// squatting.
    ///
    /// `/dev/shm` is writable by every local user, so anyone can create the name
    /// `shmlink.<our uid>.<name>` before we do; `create`, `open` and `open_or_create`
    /// then fail with `ForeignOwner` ([`CreateError::ForeignOwner`],
    /// [`OpenError::ForeignOwner`]) and only the squatter or root can free the name.
    /// In a directory that only we can write nobody else can create anything, so no
    /// name in it can be taken. The directory must be owned by our effective uid and
    /// not writable by group or others (else `DirectoryNotPrivate`); it should be on a
    /// memory filesystem (tmpfs), such as `$XDG_RUNTIME_DIR` (`/run/user/<uid>`, mode
    /// 0700, made by systemd-logind for each logged-in user) or a 0700 directory of
    /// our own in `/dev/shm`; on a disk filesystem the segment works but its pages are
    /// written back to disk. Every process using the segment must name the same
    /// directory.
    ///
    /// Creating, opening, `unlink_on_drop`, [`Segment::unlink`] and the stale-segment
    /// handling of `open_or_create` work in the directory; the free functions
    /// [`inspect`](super::inspect), [`list`](super::list), [`unlink`](super::unlink) and [`remove_stale`](super::remove_stale) look in `/dev/shm` only.
    ///
    /// We chose a directory over an alternative prefix because a prefix does not
    /// stop squatting: `/dev/shm` can be listed by everyone, so any name we use, or
    /// will use again after a restart, can be created by someone else first.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::os::unix::fs::DirBuilderExt;
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-builder-dir-{}", std::process::id());
    /// // A directory only we can write, on tmpfs.
    /// let dir = std::path::PathBuf::from(format!("/dev/shm/doc-private-{}", std::process::id()));
    /// std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    /// let seg = Segment::builder(&name).dir(&dir).payload_len(64).unlink_on_drop(true).create()?;
    /// assert!(seg.name().path().starts_with(&dir));
    /// let opened = Segment::builder(&name).dir(&dir).open()?; // same directory
    /// assert_eq!(opened.payload_len(), 64);
    /// # drop((seg, opened));
    /// # std::fs::remove_dir(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.dir = Some(dir.into());
        self
    }

    /// The validated name, in the builder's directory if it has one (which must be
    /// private: owned by us, writable by nobody else).
    fn place(&self) -> Result<SegmentName, Place> {
        let name = SegmentName::new(&self.name)
            .map_err(Place::Name)?
            .in_dir(self.dir.as_deref());
        if let Some(dir) = name.dir() {
            let (owner_uid, mode) = sys::dir_owner_mode(dir).map_err(Place::Os)?;
            if owner_uid != name.uid() || mode & 0o022 != 0 {
                return Err(Place::NotPrivate { owner_uid, mode });
            }
        }
        Ok(name)
    }

    /// Sets kind and fingerprint where the user did not.
    pub(crate) fn typed_defaults(mut self, kind: Kind, fingerprint: u64) -> Self {
        self.kind.get_or_insert(kind);
        self.fingerprint.get_or_insert(fingerprint);
        self
    }

    /// Sets the type name where the user did not.
    pub(crate) fn type_name_default(mut self, name: &str) -> Self {
        self.type_name.get_or_insert_with(|| TypeName::new(name));
        self
    }

    /// The type name recorded at creation.
    pub(crate) fn recorded_type_name(&self) -> TypeName {
        self.type_name.unwrap_or_default()
    }

    fn expect(&self) -> Expect {
        Expect {
            kind: Some(self.kind.unwrap_or(Kind::Raw)),
            fingerprint: Some(self.fingerprint.unwrap_or(0)),
            payload_len: self.payload_len,
            type_name: self.recorded_type_name(),
        }
    }

    /// Creates the segment; fails if the name exists.
    ///
    /// The object is created with `O_EXCL` and mode 0600 (whatever the umask), sized,
    /// every page of it allocated (`posix_fallocate`: a full `/dev/shm` is
    /// [`CreateError::NoSpace`] here, not a `SIGBUS` later), mapped, its header
    /// written, and then the ready flag is published with Release.
    ///
    /// # Errors
    ///
    /// [`CreateError`]: invalid name, already exists, permission denied, too large, or
    /// an OS error with its errno.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{CreateError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-create-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(256).unlink_on_drop(true);
    /// let seg = builder.create()?;
    /// assert!(seg.is_creator());
    /// assert_eq!(builder.create().unwrap_err(), CreateError::AlreadyExists);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create(&self) -> Result<Segment, CreateError> {
        self.create_with(|_| ())
    }

    /// Like [`create`](Self::create), but runs `init` on the segment before it is
    /// published, so no opener ever sees the payload before `init` is done.
    ///
    /// # Errors
    ///
    /// As [`create`](Self::create).
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::Segment;
    ///
    /// # let name = format!("doc-seg-builder-create-with-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(64).unlink_on_drop(true);
    /// let _seg = builder.create_with(|seg| {
    ///     // SAFETY: not published yet, so no other process can reach the payload.
    ///     unsafe { seg.payload().write(0, b"ready").unwrap() }
    /// })?;
    /// let opened = builder.open()?;
    /// let mut buf = [0u8; 5];
    /// // SAFETY: the segment is alive and nobody writes the payload any more.
    /// unsafe { opened.payload().read(0, &mut buf)? };
    /// assert_eq!(&buf, b"ready");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn create_with(&self, init: impl FnOnce(&Segment)) -> Result<Segment, CreateError> {
        let name = self.place()?;
        let payload_len = self.payload_len.unwrap_or(0);
        if payload_len > MAX_PAYLOAD {
            return Err(CreateError::TooLarge {
                requested: payload_len,
                max: MAX_PAYLOAD,
            });
        }
        let spec = HeaderSpec {
            kind: self.kind.unwrap_or(Kind::Raw),
            fingerprint: self.fingerprint.unwrap_or(0),
            payload_len,
            created_unix_ns: sys::unix_now_ns(),
            type_name: self.recorded_type_name(),
        };
        let deadline = Instant::now() + self.timeout;
        loop {
            match create_once(&name, &spec, deadline, self.unlink_on_drop)? {
                Some(segment) => {
                    init(&segment);
                    segment.header().publish();
                    crate::process::crash::point("segment.create", 4);
                    return Ok(segment);
                }
                // A cleanup judged our fresh object abandoned and removed it: retry.
                None if Instant::now() < deadline => continue,
                None => return Err(CreateError::Os(OsError::new("flock", Errno::EWOULDBLOCK))),
            }
        }
    }

    /// Opens an existing segment and checks it against this builder.
    ///
    /// Steps: `shm_open`; `fstat` (owner must be us; a file larger than a segment may
    /// be is [`OpenError::TooLarge`]); wait, at most the timeout, until the creator has
    /// sized the object and published the ready flag (Acquire); take a shared file
    /// lock that marks us attached (the kernel drops it if we die); check the object
    /// was not unlinked meanwhile and that every byte of it is backed by allocated
    /// memory (creators allocate every page; a sparse file is
    /// [`OpenError::NotBacked`], refused before anything past the header is touched);
    /// then validate one snapshot of the header: magic, layout version, sizes (against
    /// the mapped file), kind, fingerprint and, if set, payload length.
    ///
    /// **Stale segments.** A segment is stale when no live process holds it and a crash
    /// left it behind: its creator died before publishing it, or a process attached to
    /// it died without detaching (the contents may be half-updated). `open` never
    /// attaches to a stale segment: it returns [`OpenError::Stale`] and leaves it in
    /// place for inspection ([`inspect`](super::inspect), `shmlink ls`); [`remove_stale`](super::remove_stale) or
    /// [`open_or_create`](Self::open_or_create) clear it. A segment whose processes all
    /// detached cleanly is not stale and opens normally.
    ///
    /// # Errors
    ///
    /// Every [`OpenError`] variant but `Create`.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{OpenError, Segment};
    ///
    /// # let name = format!("doc-seg-builder-open-{}", std::process::id());
    /// let builder = Segment::builder(&name).payload_len(128);
    /// assert_eq!(builder.open().unwrap_err(), OpenError::NotFound);
    /// let _created = builder.clone().unlink_on_drop(true).create()?;
    /// let opened = builder.open()?; // usually in another process
    /// assert!(!opened.is_creator());
    /// assert_eq!(opened.payload_len(), 128);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(&self) -> Result<Segment, OpenError> {
        let name = self.place()?;
        open_validated(
            &name,
            &self.expect(),
            Instant::now() + self.timeout,
            IfStale::Refuse,
        )
    }

    /// [`open`](Self::open) for reading what the segment holds, stale or not: a live
    /// segment is attached as usual; a stale one that matches is held exclusively
    /// while the handle lives and left exactly as it was (status readers: `shmlink
    /// ls` and `inspect` show the state a crash left).
    pub(crate) fn open_inspecting(&self) -> Result<Segment, OpenError> {
        let name = self.place()?;
        open_validated(
            &name,
            &self.expect(),
            Instant::now() + self.timeout,
            IfStale::Inspect,
        )
    }

    /// Opens the segment, or creates it if it does not exist. When several processes
    /// race, exactly one creates (`O_EXCL`) and the others open what it publishes.
    ///
    /// A **stale** segment of that name (see [`open`](Self::open)) is, by default
    /// ([`OnStale::Resume`]), **resumed** when its header matches this builder (kind,
    /// fingerprint, size): taken over as it is, with its contents
    /// ([`Disposition::Resumed`]). One that does not match, or whose creator died
    /// before publishing it, is removed and a fresh one created in its place
    /// ([`Disposition::Replaced`]); so is every stale segment with
    /// [`OnStale::Replace`]. The decision is taken under an exclusive lock, so of
    /// several racers exactly one resumes or replaces, and the others open the result.
    /// A live segment that does not match the builder is an error, never replaced.
    ///
    /// The objects built on segments (rings, channels, locks) have `open_or_create`s of
    /// their own, which also check the object's contents before resuming it.
    ///
    /// # Errors
    ///
    /// [`OpenError`], with [`OpenError::Create`] if the create step failed.
    ///
    /// # Examples
    ///
    /// ```
    /// use shmlink::segment::{Disposition, Segment};
    ///
    /// # let name = format!("doc-seg-builder-open-or-create-{}", std::process::id());
    /// // Every process runs the same code; exactly one of them creates.
    /// let builder = Segment::builder(&name).payload_len(1024).unlink_on_drop(true);
    /// let (seg, how) = builder.open_or_create()?;
    /// match how {
    ///     Disposition::Created | Disposition::Replaced => assert!(seg.is_creator()),
    ///     Disposition::Resumed => assert!(seg.is_creator()), // after a crash
    ///     Disposition::Opened => assert!(!seg.is_creator()),
    /// }
    /// assert_eq!(seg.payload_len(), 1024);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_or_create(&self) -> Result<(Segment, Disposition), OpenError> {
        let (segment, how) = self.open_or_create_staged(&mut |_| ())?;
        segment.finish_resume(Instant::now() + self.timeout)?;
        Ok((segment, how))
    }

    /// [`open_or_create`](Self::open_or_create), with `init` run on a segment this
    /// call creates before it is published; a [`Disposition::Resumed`] segment comes
    /// back still held exclusively, for its object to check its contents: then
    /// [`Segment::finish_resume`] lets others in, and dropping it instead removes it
    /// (see [`resume_or_replace`]).
    pub(crate) fn open_or_create_staged(
        &self,
        init: &mut dyn FnMut(&Segment),
    ) -> Result<(Segment, Disposition), OpenError> {
        let name = self.place()?;
        let deadline = Instant::now() + self.timeout;
        let mut backoff = Backoff::new();
        let if_stale = if self.on_stale == OnStale::Resume {
            IfStale::Resume
        } else {
            IfStale::Refuse
        };
        let mut replaced = false;
        loop {
            match self.create_with(&mut *init) {
                Ok(segment) if replaced => return Ok((segment, Disposition::Replaced)),
                Ok(segment) => return Ok((segment, Disposition::Created)),
                Err(CreateError::AlreadyExists) => {}
                Err(e) => return Err(e.into()),
            }
            match open_validated(&name, &self.expect(), deadline, if_stale) {
                Ok(mut segment) if segment.is_pending_resume() => {
                    crate::sync::slow_path!(INFO, name = %name, "segment: resuming a stale segment");
                    segment.unlink_on_drop = self.unlink_on_drop;
                    return Ok((segment, Disposition::Resumed));
                }
                Ok(segment) => return Ok((segment, Disposition::Opened)),
                // Removed between our create and open: try to create again.
                Err(OpenError::NotFound) if Instant::now() < deadline => {}
                Err(OpenError::Stale(_)) if Instant::now() < deadline => {
                    if remove_stale_named(&name)? {
                        crate::sync::slow_path!(INFO, name = %name, "segment: replacing a stale segment");
                        replaced = true;
                    } else {
                        backoff.sleep();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// Runs `attempt` (an object's `open_or_create` on a staged segment, see
/// [`SegmentBuilder::open_or_create_staged`]) until it builds the object. When the
/// object refuses the contents of a segment it was resuming, that segment was removed
/// as it dropped (it was stale, and nobody else could reach it): the next attempt
/// creates a fresh one, reported as [`Disposition::Replaced`]. `segment_of` gives the
/// object's segment, whose resumption is then finished; `open_error` wraps an error
/// of that step.
pub(crate) fn resume_or_replace<O, E>(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<(O, Disposition), (E, Disposition)>,
    segment_of: impl Fn(&O) -> Option<&Segment>,
    open_error: impl Fn(OpenError) -> E,
) -> Result<(O, Disposition), E> {
    let mut replaced = false;
    let deadline = Instant::now() + timeout;
    loop {
        match attempt() {
            Ok((object, how)) => {
                let finished = segment_of(&object).map_or(Ok(()), |s| s.finish_resume(deadline));
                match finished {
                    Ok(()) => {}
                    // Removed by a cleanup while we resumed it: start over.
                    Err(OpenError::NotFound) if Instant::now() < deadline => continue,
                    Err(e) => return Err(open_error(e)),
                }
                let how = match how {
                    Disposition::Created if replaced => Disposition::Replaced,
                    how => how,
                };
                return Ok((object, how));
            }
            Err((_, Disposition::Resumed)) if Instant::now() < deadline => {
                crate::sync::slow_path!(
                    INFO,
                    "segment: a resumed object refused its contents: replacing it"
                );
                replaced = true;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Why [`SegmentBuilder::place`] failed.
enum Place {
    Name(NameError),
    NotPrivate { owner_uid: u32, mode: u32 },
    Os(Errno),
}

impl From<Place> for CreateError {
    fn from(p: Place) -> Self {
        match p {
            Place::Name(e) => CreateError::InvalidName(e),
            Place::NotPrivate { owner_uid, mode } => {
                CreateError::DirectoryNotPrivate { owner_uid, mode }
            }
            Place::Os(Errno::EACCES | Errno::EPERM) => CreateError::PermissionDenied,
            Place::Os(e) => CreateError::Os(OsError::new("stat", e)),
        }
    }
}

impl From<Place> for OpenError {
    fn from(p: Place) -> Self {
        match p {
            Place::Name(e) => OpenError::InvalidName(e),
            Place::NotPrivate { owner_uid, mode } => {
                OpenError::DirectoryNotPrivate { owner_uid, mode }
            }
            Place::Os(e) => open_error("stat", e),
        }
    }
}

/// The object named `name` exists and belongs to someone other than the user whose
/// namespace the name is in: a squatter's. `None` if it is gone or is ours.
pub(super) fn foreign_owner(name: &SegmentName) -> Option<(u32, u32)> {
    sys::owner_of(name)
        .filter(|&owner| owner != name.uid())
        .map(|owner| (owner, name.uid()))
}

/// The error of a failed operation on the name itself (`shm_open`, `shm_unlink`):
/// access refused because someone else owns the object is [`OpenError::ForeignOwner`].
pub(super) fn name_error(name: &SegmentName, op: &'static str, e: Errno) -> OpenError {
    match e {
        Errno::EACCES | Errno::EPERM => match foreign_owner(name) {
            Some((owner_uid, expected_uid)) => OpenError::ForeignOwner {
                owner_uid,
                expected_uid,
            },
            None => OpenError::PermissionDenied,
        },
        e => open_error(op, e),
    }
}
