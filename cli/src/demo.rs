//! `shmlink demo`: a parent creates a named segment, a child process opens it by name,
//! they exchange a value and a message, then time a ping-pong over two atomics.

use std::process::Command;
use std::time::{Duration, Instant};

use shmlink::segment::header::HEADER_SIZE;
use shmlink::segment::{Region, Segment, SegmentBuilder, ShmRegion, ShmSafe};
use shmlink::sync::atomic::{AtomicU64, Ordering};

use crate::Result;

/// The demo's control block: fields written by the parent, fields written by the child,
/// and two ping-pong words on cache lines of their own.
#[repr(C)]
struct Board {
    value: AtomicU64,
    message_len: AtomicU64,
    reply: AtomicU64,
    child_pid: AtomicU64,
    _pad0: [AtomicU64; 12],
    ping: AtomicU64,
    _pad1: [AtomicU64; 15],
    pong: AtomicU64,
    _pad2: [AtomicU64; 15],
}

const _: () = assert!(size_of::<Board>() == 384 && core::mem::offset_of!(Board, ping) == 128);

// SAFETY: repr(C), only integer atomics (any bit pattern valid, interior-mutable),
// explicit padding, no pointers; size asserted above.
unsafe impl ShmSafe for Board {
    const TYPE_NAME: &'static str = "shmlink-cli::demo::Board";
    fn new_zeroed() -> Self {
        let z = || AtomicU64::new(0);
        Board {
            value: z(),
            message_len: z(),
            reply: z(),
            child_pid: z(),
            _pad0: core::array::from_fn(|_| z()),
            ping: z(),
            _pad1: core::array::from_fn(|_| z()),
            pong: z(),
            _pad2: core::array::from_fn(|_| z()),
        }
    }
}

const AREA: usize = 4096;
const SPIN_LIMIT: Duration = Duration::from_secs(10);

fn builder(name: &str) -> SegmentBuilder {
    Segment::builder(name).timeout(Duration::from_secs(5))
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// Spins until `word` holds `want`; errors out if the peer stops answering.
fn spin_until(word: &AtomicU64, want: u64) -> Result {
    let started = Instant::now();
    let mut spins = 0u32;
    while word.load(Ordering::Acquire) != want {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins % 4096 == 0 && started.elapsed() > SPIN_LIMIT {
            return Err("peer stopped answering".into());
        }
    }
    Ok(())
}

pub fn parent(round_trips: u32) -> Result {
    let me = std::process::id();
    let name = format!("demo-{me}");
    println!("shmlink demo: two processes over the named segment {name:?}");

    let t = Instant::now();
    let board = ShmRegion::<Board>::create_with(
        builder(&name).unlink_on_drop(true),
        AREA,
        |board, area| {
            let msg = format!("hello from process {me}");
            // SAFETY: the segment is not published yet; nobody else can see the area.
            unsafe {
                area.write(0, msg.as_bytes())
                    .expect("message fits the area")
            };
            board.message_len.store(msg.len() as u64, Ordering::Relaxed);
            board.value.store(42, Ordering::Relaxed);
        },
    )?;
    let created = t.elapsed();
    println!(
        "[parent {me}] created it ({} bytes, mode 0600) and published value 42 and a message, in {}",
        board.segment().payload_len() + HEADER_SIZE,
        micros(created)
    );

    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "demo-child",
            "--name",
            &name,
            "--round-trips",
            &round_trips.to_string(),
        ])
        .spawn()?;
    // Wait for the child to attach (it stores its pid), bounded.
    let attach_started = Instant::now();
    while board.shared().child_pid.load(Ordering::Acquire) == 0 {
        if let Some(status) = child.try_wait()? {
            return Err(format!("child exited early with {status}").into());
        }
        if attach_started.elapsed() > SPIN_LIMIT {
            let _ = child.kill();
            return Err("child never attached".into());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    println!(
        "[parent {me}] child {} attached {} after spawn",
        board.shared().child_pid.load(Ordering::Relaxed),
        micros(t.elapsed())
    );

    // Ping-pong: parent writes ping = i, child answers pong = i.
    let shared = board.shared();
    let mut samples = Vec::with_capacity(round_trips as usize);
    let started = Instant::now();
    for i in 1..=u64::from(round_trips) {
        let t = Instant::now();
        shared.ping.store(i, Ordering::Release);
        if let Err(e) = spin_until(&shared.pong, i) {
            let _ = child.kill();
            return Err(e);
        }
        samples.push(t.elapsed());
    }
    let total = started.elapsed();
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    let reply = shared.reply.load(Ordering::Acquire);
    println!("[parent {me}] child replied {reply} (42 x 2) and exited: {status}");

    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    println!(
        "[parent {me}] ping-pong over two atomics in the segment, {round_trips} round trips in {:.1} ms:",
        total.as_secs_f64() * 1e3
    );
    println!(
        "    round trip median {} ns, p99 {} ns, p99.9 {} ns, min {} ns ({} round trips/s)",
        pct(0.5).as_nanos(),
        pct(0.99).as_nanos(),
        pct(0.999).as_nanos(),
        samples[0].as_nanos(),
        (f64::from(round_trips) / total.as_secs_f64()) as u64
    );
    drop(board);
    println!(
        "[parent {me}] dropped the segment; its name is removed (creator asked for unlink-on-drop)"
    );
    Ok(())
}

pub fn child(name: &str, round_trips: u32) -> Result {
    let me = std::process::id();
    let t = Instant::now();
    let board = ShmRegion::<Board>::open(builder(name))?;
    let opened = t.elapsed();
    let shared = board.shared();
    let len = usize::try_from(shared.message_len.load(Ordering::Relaxed))?;
    // Validate the length read from shared memory before using it.
    if len > board.area().len() {
        return Err(format!("message length {len} exceeds the area").into());
    }
    let mut msg = vec![0u8; len];
    // SAFETY: the parent wrote the message before publishing the segment and never
    // writes the area again.
    unsafe { board.area().read(0, &mut msg)? };
    let value = shared.value.load(Ordering::Relaxed);
    println!(
        "[child {me}] opened {name:?} by name in {} (header, kind and type fingerprint checked): value {value}, message {:?}",
        micros(opened),
        String::from_utf8_lossy(&msg)
    );
    shared.reply.store(value.wrapping_mul(2), Ordering::Relaxed);
    shared.child_pid.store(u64::from(me), Ordering::Release);

    for i in 1..=u64::from(round_trips) {
        spin_until(&shared.ping, i)?;
        shared.pong.store(i, Ordering::Release);
    }
    Ok(())
}
