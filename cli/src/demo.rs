//! `shmlink demo`: a parent creates a named segment, a child process opens it by name,
//! they exchange a value and a message, then time a ping-pong over two atomics, stream
//! and ping-pong over SPSC rings, send over typed channels (asynchronously and
//! acknowledged, plain-old-data and serde), share a counter under a Bakery lock, a
//! semaphore-bounded pool and seqlock snapshots, and finally make RPC calls to a
//! service the child serves over shared memory, a Unix socket and TCP at once.

use std::process::Command;
use std::time::{Duration, Instant};

use shmlink::region::{Region, ShmSafe};
use shmlink::ring::Spsc;
use shmlink::segment::header::HEADER_SIZE;
use shmlink::segment::{Segment, SegmentBuilder, ShmRegion};
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};

use crate::Result;

mod channels;
mod dlock;
mod leftovers;
mod rpc;
mod sync;

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
        if spins.is_multiple_of(4096) && started.elapsed() > SPIN_LIMIT {
            return Err("peer stopped answering".into());
        }
    }
    Ok(())
}

pub fn parent(round_trips: u32, stream_items: u64) -> Result {
    leftovers::remove_on_signal()?;
    let me = std::process::id();
    let name = format!("demo-{me}");
    let swept = leftovers::sweep_dead_runs();
    if swept > 0 {
        println!("shmlink demo: removed {swept} name(s) left by earlier runs that were killed");
    }
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

    let rings = create_rings(&name)?;
    let mut sync_objects = sync::create(&name)?;
    let channel_objects = channels::create(&name)?;
    println!(
        "[parent {me}] created five SPSC rings for the child: a 4096-slot stream and two request/reply pairs (spin, blocking)"
    );
    let t = Instant::now();
    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "demo-child",
            "--name",
            &name,
            "--round-trips",
            &round_trips.to_string(),
            "--stream-items",
            &stream_items.to_string(),
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

    print_latency(
        &format!("[parent {me}] ping-pong over two atomics in the segment (the cache-line floor)"),
        &mut samples,
        total,
    );

    ring_phases_parent(rings, stream_items, round_trips, &mut child)?;
    channels::parent_phase(&channel_objects, stream_items / 10)?;
    sync::parent_phase(&mut sync_objects, u64::from(round_trips), &mut child)?;
    if let Err(e) = rpc::parent_phase(&name, u64::from(round_trips)) {
        let _ = child.kill();
        return Err(e);
    }
    let status = child.wait()?;
    if !status.success() {
        return Err(format!("child failed: {status}").into());
    }
    dlock::parent_phase(&name)?;
    sync::parent_finish(sync_objects, u64::from(round_trips))?;
    let reply = board.shared().reply.load(Ordering::Acquire);
    println!("[parent {me}] child replied {reply} (42 x 2) and exited: {status}");
    drop(board);
    println!(
        "[parent {me}] dropped the segment; its name is removed (creator asked for unlink-on-drop)"
    );
    Ok(())
}

pub fn child(name: &str, round_trips: u32, stream_items: u64) -> Result {
    leftovers::exit_with_parent()?;
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
    ring_phases_child(name, stream_items, round_trips)?;
    channels::child_phase(name, stream_items / 10)?;
    sync::child_phase(name, u64::from(round_trips))?;
    rpc::child_phase(name)
}

pub(crate) fn print_latency(title: &str, samples: &mut [Duration], total: Duration) {
    if samples.is_empty() {
        return;
    }
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize].as_nanos();
    println!(
        "{title}: {} round trips in {:.1} ms",
        samples.len(),
        total.as_secs_f64() * 1e3
    );
    println!(
        "    round trip median {} ns, p99 {} ns, p99.9 {} ns, min {} ns",
        pct(0.5),
        pct(0.99),
        pct(0.999),
        samples[0].as_nanos()
    );
}

/// Names of the demo's rings.
fn ring_names(base: &str) -> [String; 5] {
    [
        format!("{base}.stream"),
        format!("{base}.req-spin"),
        format!("{base}.rep-spin"),
        format!("{base}.req-block"),
        format!("{base}.rep-block"),
    ]
}

const BATCH: usize = 256;

type ShmSpsc = Spsc<u64, ShmRegion<shmlink::ring::SpscHeader>>;

/// The demo's rings, created by the parent before the child starts.
struct DemoRings {
    stream: ShmSpsc,
    spin: (ShmSpsc, ShmSpsc),
    block: (ShmSpsc, ShmSpsc),
}

fn create_rings(base: &str) -> Result<DemoRings> {
    let [stream, req_s, rep_s, req_b, rep_b] = ring_names(base);
    let ring = |name: &str, cap, mode| {
        Spsc::<u64, _>::create(builder(name).unlink_on_drop(true), cap, mode)
    };
    Ok(DemoRings {
        stream: ring(&stream, 4096, WaitMode::Blocking)?,
        spin: (
            ring(&req_s, 64, WaitMode::Spin)?,
            ring(&rep_s, 64, WaitMode::Spin)?,
        ),
        block: (
            ring(&req_b, 64, WaitMode::Blocking)?,
            ring(&rep_b, 64, WaitMode::Blocking)?,
        ),
    })
}

fn ring_phases_parent(
    rings: DemoRings,
    items: u64,
    round_trips: u32,
    child: &mut std::process::Child,
) -> Result {
    let me = std::process::id();
    let DemoRings {
        stream: stream_ring,
        spin,
        block,
    } = rings;
    let mut ready = |what| -> Result {
        // The child attaches to each ring in turn; fail fast if it died.
        if let Some(status) = child.try_wait()? {
            return Err(format!("child exited early ({status}) before {what}").into());
        }
        Ok(())
    };

    // 1. Stream: child produces `items` sequence numbers in batches, we check them.
    ready("the stream")?;
    let mut rx = stream_ring.consumer()?;
    let mut buf = vec![0u64; BATCH];
    let mut next = 0u64;
    let mut started = None;
    while next < items {
        let n = rx.pop_slice(&mut buf);
        if n == 0 {
            let v = rx.pop_timeout(SPIN_LIMIT)?;
            started.get_or_insert_with(Instant::now);
            if v != next {
                return Err(format!("stream: got {v}, expected {next}").into());
            }
            next += 1;
            continue;
        }
        started.get_or_insert_with(Instant::now);
        for &v in &buf[..n] {
            if v != next {
                return Err(format!("stream: got {v}, expected {next}").into());
            }
            next += 1;
        }
    }
    let elapsed = started.map_or(Duration::ZERO, |s| s.elapsed());
    println!(
        "[parent {me}] SPSC ring (4096 x u64, blocking): received {items} sequence numbers from the child, in order, none lost: {:.1} M msgs/s ({:.0} MB/s)",
        items as f64 / elapsed.as_secs_f64() / 1e6,
        (items * 8) as f64 / elapsed.as_secs_f64() / 1e6,
    );

    // 2. Round trips over a pair of rings, spinning and then blocking on futexes.
    for (label, (req, rep), count) in [
        ("spin", spin, round_trips),
        (
            "blocking (futex sleep/wake)",
            block,
            (round_trips / 10).max(1),
        ),
    ] {
        let mut tx = req.producer()?;
        let mut rx = rep.consumer()?;
        let mut samples = Vec::with_capacity(count as usize);
        let started = Instant::now();
        for i in 0..u64::from(count) {
            let t = Instant::now();
            tx.push_timeout(i, SPIN_LIMIT)
                .map_err(|e| format!("request {i}: {e}"))?;
            let v = rx.pop_timeout(SPIN_LIMIT)?;
            samples.push(t.elapsed());
            if v != i {
                return Err(format!("reply {v} to request {i}").into());
            }
        }
        let total = started.elapsed();
        print_latency(
            &format!("[parent {me}] 8-byte round trips over two SPSC rings, {label}"),
            &mut samples,
            total,
        );
    }
    Ok(())
}

fn ring_phases_child(base: &str, items: u64, round_trips: u32) -> Result {
    let [stream, req_s, rep_s, req_b, rep_b] = ring_names(base);
    let open = |name: &str| Spsc::<u64, _>::open(builder(name));
    let stream_ring = open(&stream)?;
    let mut tx = stream_ring.producer()?;
    let batch: Vec<u64> = (0..BATCH as u64).collect();
    let mut sent = 0u64;
    let mut chunk = batch.clone();
    while sent < items {
        let want = (items - sent).min(BATCH as u64) as usize;
        for (slot, k) in chunk[..want].iter_mut().zip(&batch) {
            *slot = sent + k;
        }
        let mut done = 0;
        while done < want {
            let n = tx.push_slice(&chunk[done..want]);
            if n == 0 {
                // Full: block until there is room (or the parent is gone).
                tx.push_timeout(chunk[done], SPIN_LIMIT)
                    .map_err(|e| format!("stream: {e}"))?;
                done += 1;
            }
            done += n;
        }
        sent += want as u64;
    }
    drop(tx);
    for (req, rep, count) in [
        (&req_s, &rep_s, round_trips),
        (&req_b, &rep_b, (round_trips / 10).max(1)),
    ] {
        let (req, rep) = (open(req)?, open(rep)?);
        let mut rx = req.consumer()?;
        let mut tx = rep.producer()?;
        for _ in 0..count {
            let v = rx.pop_timeout(SPIN_LIMIT)?;
            tx.push_timeout(v, SPIN_LIMIT)
                .map_err(|e| format!("reply: {e}"))?;
        }
    }
    Ok(())
}
