//! Named segments within one process: every typed error `open` can return, produced on
//! purpose, and random bytes over the header.

mod support;

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use proptest::prelude::*;
use shmlink::region::{HeapRegion, Region, fingerprint};
use shmlink::segment::{
    self, CreateError, Disposition, Kind, NameError, OpenError, Segment, SegmentBuilder,
    SegmentName, ShmRegion, Status,
};
use shmlink::sync::atomic::{AtomicU64, Ordering};
use support::segfile::poke;
use support::unique_name;

fn builder(name: &str) -> SegmentBuilder {
    Segment::builder(name)
        .payload_len(256)
        .fingerprint(0xabcd)
        .timeout(Duration::from_millis(200))
}

fn truncate_file(name: &str, len: u64) {
    let path = SegmentName::new(name).unwrap().path();
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn create_open_round_trip_and_mode() {
    let name = unique_name("rt");
    let a = builder(&name).unlink_on_drop(true).create().unwrap();
    assert!(a.is_creator());
    let path = a.name().path();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "mode is 0600 whatever the umask");
    let b = builder(&name).open().unwrap();
    assert!(!b.is_creator());
    assert_eq!(b.payload_len(), 256);
    assert_eq!(b.kind(), Some(Kind::Raw));
    assert_eq!(b.creator().pid, std::process::id());
    // SAFETY: single-threaded; nobody else touches the payload.
    unsafe {
        a.payload().write(250, b"tail!!").unwrap();
        let mut buf = [0u8; 6];
        b.payload().read(250, &mut buf).unwrap();
        assert_eq!(&buf, b"tail!!");
        assert!(b.payload().read(251, &mut buf).is_err());
    }
    assert_eq!(a.header().attached(), 2);
    drop(b);
    assert_eq!(a.header().attached(), 1);
    drop(a);
    assert!(!path.exists(), "creator unlinked on drop");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn already_exists_not_found_invalid_name() {
    let name = unique_name("exists");
    let _a = builder(&name).unlink_on_drop(true).create().unwrap();
    assert_eq!(
        builder(&name).create().unwrap_err(),
        CreateError::AlreadyExists
    );
    assert_eq!(
        builder(&unique_name("missing")).open().unwrap_err(),
        OpenError::NotFound
    );
    assert_eq!(
        builder("no/slashes").open().unwrap_err(),
        OpenError::InvalidName(NameError::InvalidByte {
            byte: b'/',
            index: 2
        })
    );
    assert_eq!(
        builder("").create().unwrap_err(),
        CreateError::InvalidName(NameError::Empty)
    );
    assert!(matches!(
        builder(&unique_name("big"))
            .payload_len(u64::MAX)
            .create()
            .unwrap_err(),
        CreateError::TooLarge { .. }
    ));
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn wrong_fingerprint_kind_or_size_is_refused() {
    let name = unique_name("fp");
    let _a = builder(&name).unlink_on_drop(true).create().unwrap();
    assert!(matches!(
        builder(&name).fingerprint(0x1234).open().unwrap_err(),
        OpenError::TypeMismatch {
            expected: 0x1234,
            found: 0xabcd,
            ..
        }
    ));
    assert_eq!(
        builder(&name).kind(Kind::Typed).open().unwrap_err(),
        OpenError::WrongKind {
            expected: Kind::Typed,
            found: Kind::Raw.code()
        }
    );
    assert!(matches!(
        builder(&name).payload_len(512).open().unwrap_err(),
        OpenError::SizeMismatch {
            what: "payload length",
            expected: 512,
            found: 256
        }
    ));
    // A typed region of another type: refused by fingerprint.
    let typed = unique_name("typed");
    let _r =
        ShmRegion::<AtomicU64>::create(Segment::builder(&typed).unlink_on_drop(true), 0).unwrap();
    let err = ShmRegion::<[AtomicU64; 2]>::open(Segment::builder(&typed)).unwrap_err();
    let OpenError::TypeMismatch {
        expected,
        found,
        expected_type,
        found_type,
    } = err
    else {
        panic!("{err:?}");
    };
    assert_eq!(
        (expected, found),
        (fingerprint::<[AtomicU64; 2]>(), fingerprint::<AtomicU64>())
    );
    // Both names are told: the one asked for and the one the creator recorded.
    assert_eq!(found_type.as_str(), "AtomicU64");
    assert!(
        expected_type.as_str().contains("AtomicU64"),
        "{expected_type}"
    );
    assert!(err.to_string().contains("holds `AtomicU64`"), "{err}");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn corrupted_magic_version_and_state_are_typed_errors() {
    let name = unique_name("magic");
    let _a = builder(&name).unlink_on_drop(true).create().unwrap();
    poke(&name, 0, b"garbage!");
    assert!(matches!(
        builder(&name).open().unwrap_err(),
        OpenError::IncompatibleLayout { field: "magic", .. }
    ));
    assert!(matches!(
        segment::inspect(&name).unwrap().status,
        Status::Invalid(OpenError::IncompatibleLayout { field: "magic", .. })
    ));
    poke(&name, 0, b"shmlink\0");
    poke(&name, 8, &99u32.to_le_bytes());
    assert_eq!(
        builder(&name).open().unwrap_err(),
        OpenError::IncompatibleLayout {
            field: "layout_version",
            expected: 1,
            found: 99
        }
    );
    poke(&name, 8, &1u32.to_le_bytes());
    poke(&name, 12, &0xdead_beefu32.to_le_bytes());
    assert_eq!(
        builder(&name).open().unwrap_err(),
        OpenError::Corrupt {
            field: "state",
            found: 0xdead_beef
        }
    );
    poke(&name, 12, &1u32.to_le_bytes());
    builder(&name).open().expect("repaired header opens again");
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn truncated_file_is_a_size_mismatch() {
    let name = unique_name("trunc");
    let a = builder(&name).create().unwrap();
    // The creator must not touch the payload after this: its pages are gone (SIGBUS).
    truncate_file(&name, 128 + 100);
    assert_eq!(
        builder(&name).open().unwrap_err(),
        OpenError::SizeMismatch {
            what: "file size",
            expected: 128 + 256,
            found: 128 + 100
        }
    );
    truncate_file(&name, 64);
    assert_eq!(
        builder(&name).open().unwrap_err(),
        OpenError::SizeMismatch {
            what: "file size",
            expected: 128,
            found: 64
        }
    );
    assert!(matches!(
        segment::inspect(&name).unwrap().status,
        Status::Invalid(OpenError::SizeMismatch { .. })
    ));
    a.unlink().unwrap();
    std::mem::forget(a); // its mapping is partly past EOF; never touch it again
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn foreign_owner_is_refused() {
    let name = unique_name("owner");
    let a = builder(&name).unlink_on_drop(true).create().unwrap();
    let path = a.name().path();
    // Only root can hand a file to another user; elsewhere this case cannot be built.
    if nix::unistd::geteuid().is_root() {
        std::os::unix::fs::chown(&path, Some(4242), None).unwrap();
        assert_eq!(
            builder(&name).open().unwrap_err(),
            OpenError::ForeignOwner {
                owner_uid: 4242,
                expected_uid: 0
            }
        );
    } else {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
        assert_eq!(
            builder(&name).open().unwrap_err(),
            OpenError::PermissionDenied
        );
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn open_or_create_creates_then_opens_and_never_replaces_a_live_mismatch() {
    let name = unique_name("ooc");
    let (a, how) = builder(&name)
        .unlink_on_drop(true)
        .open_or_create()
        .unwrap();
    assert_eq!(how, Disposition::Created);
    let (_b, how) = builder(&name).open_or_create().unwrap();
    assert_eq!(how, Disposition::Opened);
    assert!(matches!(
        builder(&name).fingerprint(1).open_or_create().unwrap_err(),
        OpenError::TypeMismatch { .. }
    ));
    assert!(a.name().path().exists());
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn list_shows_our_segment_alive() {
    let name = unique_name("ls");
    let _a = builder(&name).unlink_on_drop(true).create().unwrap();
    let all = segment::list().unwrap();
    let me = all.iter().find(|i| i.name.as_str() == name).unwrap();
    assert_eq!(me.status, Status::Alive);
    assert_eq!(me.file_size, 128 + 256);
    let h = me.header.unwrap();
    assert_eq!(
        (h.kind, h.payload_len, h.attached),
        (Kind::Raw.code(), 256, 1)
    );
}

/// One algorithm, two kinds of memory.
fn bump<R: Region<Shared = AtomicU64>>(region: &R, times: u64) -> u64 {
    for _ in 0..times {
        region.shared().fetch_add(1, Ordering::AcqRel);
    }
    // SAFETY: the caller runs this single-threaded over the area.
    unsafe { region.area().write(0, &times.to_le_bytes()).unwrap() };
    region.shared().load(Ordering::Acquire)
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn same_code_on_heap_and_segment_regions() {
    let heap = HeapRegion::<AtomicU64>::new(8);
    let name = unique_name("region");
    let shm =
        ShmRegion::<AtomicU64>::create(Segment::builder(&name).unlink_on_drop(true), 8).unwrap();
    assert_eq!(bump(&heap, 5), 5);
    assert_eq!(bump(&shm, 5), 5);
    let other = ShmRegion::<AtomicU64>::open(Segment::builder(&name)).unwrap();
    assert_eq!(other.shared().load(Ordering::Acquire), 5);
    let mut buf = [0u8; 8];
    // SAFETY: nobody writes the area now.
    unsafe { other.area().read(0, &mut buf).unwrap() };
    assert_eq!(u64::from_le_bytes(buf), 5);
}

/// Header bytes: pure noise, or a valid header with one more field left random at
/// each level, so every check (and the success path) is reached.
fn any_header() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(any::<u8>(), 128), 0u8..8).prop_map(|(mut v, level)| {
        let mut put = |range: std::ops::Range<usize>, bytes: &[u8]| v[range].copy_from_slice(bytes);
        if level >= 1 {
            put(0..8, b"shmlink\0");
            put(8..12, &1u32.to_le_bytes());
            put(12..16, &1u32.to_le_bytes()); // ready
        }
        if level >= 2 {
            put(16..20, &128u32.to_le_bytes());
            put(40..48, &128u64.to_le_bytes());
        }
        if level >= 3 {
            put(32..40, &(128u64 + 256).to_le_bytes());
        }
        if level >= 4 {
            put(48..56, &256u64.to_le_bytes());
        }
        if level >= 5 {
            put(20..24, &Kind::Raw.code().to_le_bytes());
        }
        if level >= 6 {
            put(24..32, &0xabcdu64.to_le_bytes());
        }
        if level == 7 {
            // Still being created, by a random "creator".
            put(12..16, &0u32.to_le_bytes());
        }
        v
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    /// Whatever the header holds, open returns a typed result: no panic, no hang, no
    /// out-of-bounds access.
    #[test]
    #[cfg_attr(miri, ignore = "maps a shared file")]
    fn random_header_bytes_give_typed_errors(bytes in any_header(), creator_stays in any::<bool>()) {
        let name = unique_name("prop");
        let a = builder(&name).unlink_on_drop(true).create().unwrap();
        poke(&name, 0, &bytes);
        // With the creator gone nobody holds the segment: the stale checks run too.
        let a = if creator_stays {
            Some(a)
        } else {
            let mut a = a;
            a.set_unlink_on_drop(false);
            drop(a);
            None
        };
        let b = builder(&name).timeout(Duration::from_millis(20));
        match b.open() {
            Ok(seg) => {
                // Only a header that passes every check opens; then the sizes agree.
                prop_assert_eq!(seg.payload_len(), 256);
            }
            Err(
                OpenError::IncompatibleLayout { .. }
                | OpenError::Corrupt { .. }
                | OpenError::SizeMismatch { .. }
                | OpenError::WrongKind { .. }
                | OpenError::TypeMismatch { .. }
                | OpenError::NotInitialized { .. }
                | OpenError::Stale(_),
            ) => {}
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
        let _ = segment::inspect(&name).unwrap();
        drop(a);
        let _ = segment::unlink(&name);
    }
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn exclusive_lock_held_by_a_cleanup_is_busy() {
    // An idle segment (nobody attached), locked exclusively, as a stale-segment
    // cleanup does while it decides.
    let other = unique_name("busy");
    let mut b = builder(&other).create().unwrap();
    b.set_unlink_on_drop(false);
    drop(b);
    let file = std::fs::File::open(SegmentName::new(&other).unwrap().path()).unwrap();
    let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, e)| e)
        .unwrap();
    let err = builder(&other)
        .timeout(Duration::from_millis(50))
        .open()
        .unwrap_err();
    assert!(matches!(err, OpenError::Busy { .. }), "{err:?}");
    drop(lock);
    builder(&other).open().expect("opens once the lock is gone");
    segment::unlink(&other).unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn open_or_create_reports_a_failed_create() {
    let err = builder(&unique_name("ooc-big"))
        .payload_len(u64::MAX)
        .open_or_create()
        .unwrap_err();
    assert!(
        matches!(err, OpenError::Create(CreateError::TooLarge { .. })),
        "{err:?}"
    );
}

// ---- issue 11, defect 9: headers that claim more memory than the file has ----

/// Removes a hand-made segment file when the test ends, pass or fail.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Builds, by hand, the file `name` as a hostile or broken creator would: the first
/// bytes of a real SPSC ring of `T` (segment header and ring header, so
/// every check of the header passes), with the ring's capacity set to `capacity` and
/// the segment's sizes to match, published, nobody attached, and the file sized with
/// `ftruncate` only: sparse, no memory behind the slots.
fn hand_made_sparse_spsc<T: shmlink::region::Pod>(
    name: &str,
    capacity: u64,
) -> (RemoveOnDrop, u64) {
    use shmlink::ring::{Spsc, SpscHeader};
    use shmlink::sync::WaitMode;
    const LEGIT_CAPACITY: u64 = 64;
    let legit = unique_name("legit-spsc");
    let ring = Spsc::<T, _>::create(
        Segment::builder(&legit).unlink_on_drop(true),
        64,
        WaitMode::Spin,
    )
    .unwrap();
    let ctl = shmlink::region::area_offset::<SpscHeader>() as u64;
    let payload = ring_payload_len(&legit);
    let slot = (payload - ctl) / LEGIT_CAPACITY;
    let mut bytes = std::fs::read(SegmentName::new(&legit).unwrap().path()).unwrap();
    drop(ring);
    bytes.truncate(128 + ctl as usize);
    let payload_len = ctl + capacity * slot;
    let total = 128 + payload_len;
    bytes[32..40].copy_from_slice(&total.to_le_bytes()); // total_size
    bytes[48..56].copy_from_slice(&payload_len.to_le_bytes()); // payload_len
    bytes[80..84].copy_from_slice(&0u32.to_le_bytes()); // attached: nobody
    bytes[128..136].copy_from_slice(&capacity.to_le_bytes()); // RingConfig::capacity
    let path = SegmentName::new(name).unwrap().path();
    let guard = RemoveOnDrop(path.clone());
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    f.write_all(&bytes).unwrap();
    f.set_len(total).unwrap(); // ftruncate: a hole, not memory
    (guard, total)
}

fn ring_payload_len(name: &str) -> u64 {
    segment::inspect(name).unwrap().header.unwrap().payload_len
}

/// A valid SPSC header that claims 2^32 slots over a sparse file: open must refuse it
/// at once, with a typed error, before anything walks the slots (claiming a role
/// would otherwise touch every slot stamp: 64 GiB of /dev/shm, or SIGBUS).
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn sparse_spsc_ring_claiming_2_pow_32_slots_is_refused_at_open() {
    use shmlink::ring::{BuildError, Spsc};
    let name = unique_name("sparse-spsc");
    let (_file, total) = hand_made_sparse_spsc::<u64>(&name, 1 << 32);
    let began = std::time::Instant::now();
    let res = Spsc::<u64, _>::open(Segment::builder(&name));
    let took = began.elapsed();
    match res {
        Err(BuildError::Open {
            error: OpenError::NotBacked { len, allocated },
            ..
        }) => {
            assert_eq!(len, total);
            assert!(allocated < len, "{allocated} of {len}");
        }
        Err(e) => panic!("refused for another reason: {e:?}"),
        // Do not claim a role here: that is the walk that fills /dev/shm.
        Ok(ring) => panic!("a sparse ring of {} slots was opened", ring.capacity()),
    }
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The segment layer says the same for every kind, and so does `ls`.
    assert!(matches!(
        Segment::builder(&name).open().unwrap_err(),
        OpenError::NotBacked { .. }
    ));
    assert!(matches!(
        segment::inspect(&name).unwrap().status,
        Status::Invalid(OpenError::NotBacked { .. })
    ));
}

/// A header (and file) larger than any segment may be is refused before it is
/// mapped: here a ring of 2^32 slots of 512-byte elements (over 2 TiB).
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn header_claiming_more_than_max_payload_is_refused() {
    use shmlink::ring::{BuildError, Spsc};
    let name = unique_name("huge-claim");
    let (_file, total) = hand_made_sparse_spsc::<[u64; 64]>(&name, 1 << 32);
    assert!(total > segment::MAX_PAYLOAD);
    let too_large = OpenError::TooLarge {
        len: total,
        max: segment::MAX_PAYLOAD + 128,
    };
    match Spsc::<[u64; 64], _>::open(Segment::builder(&name)) {
        Err(BuildError::Open { error: e, .. }) => assert_eq!(e, too_large),
        Err(e) => panic!("refused for another reason: {e:?}"),
        Ok(ring) => panic!("a ring of {} slots was opened", ring.capacity()),
    }
    assert_eq!(Segment::builder(&name).open().unwrap_err(), too_large);
}

/// What the creator does instead: every page is allocated at creation.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn created_segments_are_fully_backed() {
    use std::os::unix::fs::MetadataExt;
    let name = unique_name("backed");
    let seg = builder(&name)
        .payload_len(1 << 20)
        .unlink_on_drop(true)
        .create()
        .unwrap();
    let meta = std::fs::metadata(seg.name().path()).unwrap();
    assert!(meta.blocks() * 512 >= meta.size(), "{meta:?}");
}

// ---- issue 11, defect 11: squatting ----

/// The squatter's uid in these tests, and the victim's when a child plays it.
const SQUATTER: u32 = 4242;
const NOBODY: u32 = 65534;

/// Plays the squatter: creates the file of `name` in the namespace of `victim`
/// (`/dev/shm/shmlink.<victim>.<name>`) before the victim does, mode 0600, and gives
/// it to `owner`. Only root can hand a file to another user.
fn squat(name: &str, victim: u32, owner: u32) -> RemoveOnDrop {
    use std::os::unix::fs::OpenOptionsExt;
    let path = SegmentName::for_uid(name, victim).unwrap().path();
    let guard = RemoveOnDrop(path.clone());
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .unwrap();
    nix::unistd::fchown(&f, Some(nix::unistd::Uid::from_raw(owner)), None).unwrap();
    guard
}

/// A private directory (0700, ours) on tmpfs for segments, removed at the end.
struct PrivateDir(std::path::PathBuf);

impl PrivateDir {
    fn new(tag: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt;
        let path = std::path::PathBuf::from(format!("/dev/shm/{}", unique_name(tag)));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .unwrap();
        Self(path)
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Someone else created our name first: create, open_or_create and open all say
/// so, naming the owner, instead of `AlreadyExists` / `PermissionDenied`.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn squatted_name_is_foreign_owner_on_create_open_or_create_and_open() {
    if !nix::unistd::geteuid().is_root() {
        println!("not root: a squatted name cannot be built here (see the child test)");
        return;
    }
    let name = unique_name("squat");
    let _squat = squat(&name, 0, NOBODY);
    let create = builder(&name).create().unwrap_err();
    assert_eq!(
        create,
        CreateError::ForeignOwner {
            owner_uid: NOBODY,
            expected_uid: 0
        }
    );
    assert!(create.to_string().contains("uid 65534"), "{create}");
    let foreign = OpenError::ForeignOwner {
        owner_uid: NOBODY,
        expected_uid: 0,
    };
    assert_eq!(builder(&name).open_or_create().unwrap_err(), foreign);
    assert_eq!(builder(&name).open().unwrap_err(), foreign);
    assert!(foreign.to_string().contains("uid 65534"), "{foreign}");
}

/// The same as an unprivileged victim (a child that drops to uid 65534), where the
/// kernel refuses access to the squatter's 0600 file (and its removal: `/dev/shm` is
/// sticky): every call is `ForeignOwner` naming the squatter, and a private directory
/// is the way out.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn squatted_name_is_foreign_owner_for_an_unprivileged_victim() {
    if !nix::unistd::geteuid().is_root() {
        println!("not root: cannot play two users");
        return;
    }
    let name = unique_name("squat-child");
    let _squat = squat(&name, NOBODY, SQUATTER);
    let done = support::Scenario::new("squat_victim")
        .arg("name", &name)
        .spawn()
        .success(Duration::from_secs(60));
    let got = done.values();
    let foreign = format!("ForeignOwner {{ owner_uid: {SQUATTER}, expected_uid: {NOBODY} }}");
    for call in ["create", "open_or_create", "open", "unlink"] {
        assert_eq!(
            got.get(call),
            Some(&foreign),
            "{call}: {:?}\n{}",
            done.reports,
            done.output
        );
    }
    assert_eq!(got.get("way_out").map(String::as_str), Some("ok"));
}

/// Child side of the test above: runs as uid 65534.
fn squat_victim() {
    let name = support::arg("name");
    nix::unistd::setgroups(&[]).unwrap();
    let gid = nix::unistd::Gid::from_raw(NOBODY);
    nix::unistd::setresgid(gid, gid, gid).unwrap();
    let uid = nix::unistd::Uid::from_raw(NOBODY);
    nix::unistd::setresuid(uid, uid, uid).unwrap();
    let b = builder(&name);
    let report = |call: &str, e: String| support::report(format!("{call}={e}"));
    report("create", format!("{:?}", b.create().map(drop).unwrap_err()));
    report(
        "open_or_create",
        format!("{:?}", b.open_or_create().map(drop).unwrap_err()),
    );
    report("open", format!("{:?}", b.open().map(drop).unwrap_err()));
    report(
        "unlink",
        format!("{:?}", segment::unlink(&name).unwrap_err()),
    );
    let dir = PrivateDir::new("victim-dir");
    let private = builder(&name).dir(&dir.0).unlink_on_drop(true);
    let (seg, how) = private.open_or_create().unwrap();
    assert_eq!(how, Disposition::Created);
    private.open().unwrap();
    drop(seg);
    report("way_out", "ok".to_owned());
}

scenarios!(squat_victim);

/// The way out: a segment in a directory only we can write, whatever squats the
/// `/dev/shm` name; a directory others could write (or another user's) is refused.
#[test]
#[cfg_attr(miri, ignore = "maps a shared file")]
fn private_directory_is_the_way_out_of_a_squat() {
    use std::os::unix::fs::PermissionsExt;
    let name = unique_name("way-out");
    let _squat = nix::unistd::geteuid()
        .is_root()
        .then(|| squat(&name, 0, NOBODY));
    let dir = PrivateDir::new("private");
    let b = builder(&name).dir(&dir.0);
    let a = b.clone().unlink_on_drop(true).create().unwrap();
    assert_eq!(
        a.name().path(),
        dir.0.join(a.name().os_name().trim_start_matches('/'))
    );
    let mode = std::fs::metadata(a.name().path())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(b.open_or_create().unwrap().1, Disposition::Opened);
    let opened = b.open().unwrap();
    assert_eq!(opened.payload_len(), 256);
    drop(opened);
    drop(a);
    assert_eq!(b.open().unwrap_err(), OpenError::NotFound);

    // Not private: writable by others (even with the sticky bit, like /dev/shm).
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(
        b.create().unwrap_err(),
        CreateError::DirectoryNotPrivate {
            owner_uid: nix::unistd::geteuid().as_raw(),
            mode: 0o1777
        }
    );
    assert!(matches!(
        b.open().unwrap_err(),
        OpenError::DirectoryNotPrivate { mode: 0o1777, .. }
    ));
    // Not ours.
    if nix::unistd::geteuid().is_root() {
        std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&dir.0, Some(NOBODY), None).unwrap();
        assert_eq!(
            b.open_or_create().unwrap_err(),
            OpenError::DirectoryNotPrivate {
                owner_uid: NOBODY,
                mode: 0o700
            }
        );
    }
}
