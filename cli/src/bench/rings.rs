//! `shmlink bench rings`: cross-process ring measurements with same-run baselines.
//!
//! The parent pins itself to one core and a child (this binary, `bench-child`) to
//! another, where the machine allows it, and they measure, in one run:
//! - round trips of 8 B and 1 KiB messages over two SPSC rings, spinning and blocking;
//! - one-way throughput of 8 B messages, single and batched;
//! - baselines: a raw two-atomic ping-pong over a shared mapping (the cache-line floor),
//!   a Unix-domain-socket ping-pong, in-process rtrb and crossbeam-channel, and
//!   a bare word ring for batches (the copying alone).

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::Instant;

use shmlink::region::{Region, ShmSafe};
use shmlink::ring::{Mpmc, MpmcHeader, PopError, PushError, Spsc, SpscHeader};
use shmlink::segment::ShmRegion;
use shmlink::sync::WaitMode;
use shmlink::sync::atomic::{AtomicU64, Ordering};

use super::{
    LIMIT, Measurement, Runner, builder, finish, in_process, median, percentiles, pin,
    print_goal_table, print_json, spin_until,
};
use crate::Result;

/// Messages per batch in the batched throughput case.
const BATCH: usize = 1024;

fn print_table(results: &[Measurement], r: &Runner) {
    print_goal_table(
        &format!("shmlink bench rings ({})", r.placement("parent", "child")),
        "lower is better for ns, higher for msgs/s",
        results,
        &[],
    );
}

/// A message type for the round-trip cases.
pub(crate) trait Msg: shmlink::region::Pod {
    const LABEL: &'static str;
    fn make(seq: u64) -> Self;
    fn seq(&self) -> u64;
}

impl Msg for u64 {
    const LABEL: &'static str = "8 B";
    fn make(seq: u64) -> Self {
        seq
    }
    fn seq(&self) -> u64 {
        *self
    }
}

impl Msg for [u8; 1024] {
    const LABEL: &'static str = "1 KiB";
    fn make(seq: u64) -> Self {
        let mut m = [0u8; 1024];
        m[..8].copy_from_slice(&seq.to_le_bytes());
        m[1016..].copy_from_slice(&seq.to_le_bytes());
        m
    }
    fn seq(&self) -> u64 {
        let head = u64::from_le_bytes(self[..8].try_into().unwrap_or_default());
        let tail = u64::from_le_bytes(self[1016..].try_into().unwrap_or_default());
        if head == tail { head } else { u64::MAX }
    }
}

type ShmSpsc<T> = Spsc<T, ShmRegion<SpscHeader>>;

fn pop_one<T: Msg>(
    rx: &mut shmlink::ring::Consumer<T, ShmRegion<SpscHeader>>,
    spin: bool,
) -> Result<T> {
    if !spin {
        return Ok(rx.pop_timeout(LIMIT)?);
    }
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        match rx.try_pop() {
            Ok(v) => return Ok(v),
            Err(PopError::Empty) => {
                std::hint::spin_loop();
                polls = polls.wrapping_add(1);
                if polls.is_multiple_of(1 << 20) && started.elapsed() > LIMIT {
                    return Err("peer stopped answering".into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn push_one<T: Msg>(tx: &mut shmlink::ring::Producer<T, ShmRegion<SpscHeader>>, v: T) -> Result {
    match tx.try_push(v) {
        Ok(()) => Ok(()),
        Err(PushError::Full(v)) => tx
            .push_timeout(v, LIMIT)
            .map_err(|e| format!("push: {e}").into()),
        Err(e) => Err(format!("push: {e}").into()),
    }
}

/// The raw floor's shared block: two words on separate lines.
#[repr(C)]
struct PingPong {
    ping: AtomicU64,
    _pad0: [AtomicU64; 15],
    pong: AtomicU64,
    _pad1: [AtomicU64; 15],
}

// SAFETY: repr(C), integer atomics only (explicit padding), no pointers.
unsafe impl ShmSafe for PingPong {
    const TYPE_NAME: &'static str = "shmlink-cli::bench::PingPong";
    fn new_zeroed() -> Self {
        let z = || AtomicU64::new(0);
        Self {
            ping: z(),
            _pad0: core::array::from_fn(|_| z()),
            pong: z(),
            _pad1: core::array::from_fn(|_| z()),
        }
    }
}

pub(crate) fn raw_floor(r: &mut Runner, iters: u64) -> Result<[f64; 3]> {
    let name = r.name("raw");
    let region = ShmRegion::<PingPong>::create(builder(&name).unlink_on_drop(true), 0)?;
    let child = r.child("raw", &name, iters)?;
    let s = region.shared();
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 1..=iters {
        let t = Instant::now();
        s.ping.store(i, Ordering::Release);
        spin_until(&s.pong, i)?;
        samples.push(t.elapsed());
    }
    finish(child)?;
    Ok(percentiles(samples))
}

pub(crate) fn ring_round_trips<T: Msg>(
    r: &mut Runner,
    mode: WaitMode,
    iters: u64,
) -> Result<[f64; 3]> {
    let (req, rep) = (r.name("req"), r.name("rep"));
    let a = ShmSpsc::<T>::create(builder(&req).unlink_on_drop(true), 64, mode)?;
    let b = ShmSpsc::<T>::create(builder(&rep).unlink_on_drop(true), 64, mode)?;
    let case = format!(
        "rt-{}-{}",
        if T::LABEL == "8 B" { "8" } else { "1k" },
        if mode == WaitMode::Spin {
            "spin"
        } else {
            "block"
        }
    );
    let child = r.child(&case, &format!("{req},{rep}"), iters)?;
    let mut tx = a.producer()?;
    let mut rx = b.consumer()?;
    let spin = mode == WaitMode::Spin;
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        let t = Instant::now();
        push_one(&mut tx, T::make(i))?;
        let v = pop_one(&mut rx, spin)?;
        samples.push(t.elapsed());
        if v.seq() != i {
            return Err(format!("reply {} to request {i}", v.seq()).into());
        }
    }
    drop(tx);
    finish(child)?;
    Ok(percentiles(samples))
}

fn ring_round_trip_child<T: Msg>(names: &str, spin: bool, iters: u64) -> Result {
    let (req, rep) = names.split_once(',').ok_or("bad names")?;
    let a = ShmSpsc::<T>::open(builder(req))?;
    let b = ShmSpsc::<T>::open(builder(rep))?;
    let mut rx = a.consumer()?;
    let mut tx = b.producer()?;
    for _ in 0..iters {
        let v = pop_one(&mut rx, spin)?;
        push_one(&mut tx, v)?;
    }
    Ok(())
}

pub(crate) fn uds_round_trips(r: &mut Runner, size: usize, iters: u64) -> Result<[f64; 3]> {
    let path = std::env::temp_dir().join(format!("{}.uds", r.name("uds")));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let child = r.child(
        if size == 8 { "uds-8" } else { "uds-1k" },
        path.to_str().ok_or("path")?,
        iters,
    )?;
    let (mut sock, _) = listener.accept()?;
    let _ = std::fs::remove_file(&path);
    sock.set_read_timeout(Some(LIMIT))?;
    let mut buf = vec![0u8; size];
    let mut samples = Vec::with_capacity(iters as usize);
    for i in 0..iters {
        buf[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        sock.write_all(&buf)?;
        sock.read_exact(&mut buf)?;
        samples.push(t.elapsed());
    }
    finish(child)?;
    Ok(percentiles(samples))
}

fn uds_child(path: &str, size: usize, iters: u64) -> Result {
    let mut sock = UnixStream::connect(path)?;
    sock.set_read_timeout(Some(LIMIT))?;
    let mut buf = vec![0u8; size];
    for _ in 0..iters {
        sock.read_exact(&mut buf)?;
        sock.write_all(&buf)?;
    }
    Ok(())
}

/// Messages per second received by the parent from a producing child.
fn ring_throughput(r: &mut Runner, batched: bool, items: u64) -> Result<f64> {
    let name = r.name("tput");
    let ring = ShmSpsc::<u64>::create(builder(&name).unlink_on_drop(true), 4096, WaitMode::Spin)?;
    let mut rx = ring.consumer()?;
    let child = r.child(
        if batched { "tput-batch" } else { "tput-single" },
        &name,
        items,
    )?;
    let mut got = 0u64;
    let mut started = None;
    let mut buf = vec![0u64; BATCH];
    let deadline = Instant::now() + LIMIT;
    while got < items {
        if batched {
            let n = rx.pop_slice(&mut buf);
            if n > 0 {
                started.get_or_insert_with(Instant::now);
                if buf[n - 1] != got + n as u64 - 1 {
                    return Err("throughput: sequence broken".into());
                }
                got += n as u64;
                continue;
            }
        } else {
            match rx.try_pop() {
                Ok(v) => {
                    started.get_or_insert_with(Instant::now);
                    if v != got {
                        return Err("throughput: sequence broken".into());
                    }
                    got += 1;
                    continue;
                }
                Err(PopError::Empty) => {}
                Err(e) => return Err(e.into()),
            }
        }
        std::hint::spin_loop();
        if got.is_multiple_of(4096) && Instant::now() > deadline {
            return Err("throughput: stalled".into());
        }
    }
    let secs = started.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
    finish(child)?;
    Ok(items as f64 / secs)
}

fn ring_throughput_child(name: &str, batched: bool, items: u64) -> Result {
    let ring = ShmSpsc::<u64>::open(builder(name))?;
    let mut tx = ring.producer()?;
    if batched {
        let mut chunk = vec![0u64; BATCH];
        let mut sent = 0u64;
        while sent < items {
            let want = (items - sent).min(BATCH as u64) as usize;
            for (k, slot) in chunk[..want].iter_mut().enumerate() {
                *slot = sent + k as u64;
            }
            let mut done = 0;
            while done < want {
                let n = tx.push_slice(&chunk[done..want]);
                if n == 0 {
                    std::hint::spin_loop();
                }
                done += n;
            }
            sent += want as u64;
        }
    } else {
        for i in 0..items {
            let mut v = i;
            loop {
                match tx.try_push(v) {
                    Ok(()) => break,
                    Err(PushError::Full(back)) => {
                        v = back;
                        std::hint::spin_loop();
                    }
                    Err(e) => return Err(format!("push: {e}").into()),
                }
            }
        }
    }
    Ok(())
}

/// Messages per second through an MPMC ring from a producing child.
fn mpmc_throughput(r: &mut Runner, items: u64) -> Result<f64> {
    let name = r.name("mpmc");
    let ring = Mpmc::<u64, ShmRegion<MpmcHeader>>::create(
        builder(&name).unlink_on_drop(true),
        4096,
        WaitMode::Spin,
    )?;
    let mut rx = ring.consumer()?;
    let child = r.child("mpmc-produce", &name, items)?;
    let mut got = 0u64;
    let mut started = None;
    let deadline = Instant::now() + LIMIT;
    while got < items {
        match rx.try_pop() {
            Ok(v) => {
                started.get_or_insert_with(Instant::now);
                if v != got {
                    return Err("mpmc throughput: sequence broken".into());
                }
                got += 1;
            }
            Err(PopError::Empty) => {
                std::hint::spin_loop();
                if got.is_multiple_of(4096) && Instant::now() > deadline {
                    return Err("mpmc throughput: stalled".into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    let secs = started.map_or(f64::NAN, |s| s.elapsed().as_secs_f64());
    finish(child)?;
    Ok(items as f64 / secs)
}

fn mpmc_produce_child(name: &str, items: u64) -> Result {
    let ring = Mpmc::<u64, ShmRegion<MpmcHeader>>::open(builder(name))?;
    let mut tx = ring.producer()?;
    for i in 0..items {
        let mut v = i;
        loop {
            match tx.try_push(v) {
                Ok(()) => break,
                Err(PushError::Full(back)) => {
                    v = back;
                    std::hint::spin_loop();
                }
                Err(e) => return Err(format!("push: {e}").into()),
            }
        }
    }
    Ok(())
}

fn rtrb_run(items: u64) -> Box<dyn FnOnce() + Send> {
    let (mut tx, mut rx) = rtrb::RingBuffer::<u64>::new(4096);
    let producer = std::thread::spawn(move || {
        pin(0);
        for i in 0..items {
            let mut v = i;
            while let Err(rtrb::PushError::Full(back)) = tx.push(v) {
                v = back;
                std::hint::spin_loop();
            }
        }
    });
    Box::new(move || {
        let mut n = 0;
        while n < items {
            match rx.pop() {
                Ok(v) => {
                    assert_eq!(v, n, "rtrb: sequence broken");
                    n += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
        let _ = producer.join();
    })
}

fn shmlink_heap_run(items: u64) -> Box<dyn FnOnce() + Send> {
    let ring = Spsc::<u64, _>::new(4096, WaitMode::Spin).expect("heap ring");
    let mut tx = ring.producer().expect("producer");
    let mut rx = ring.consumer().expect("consumer");
    let producer = std::thread::spawn(move || {
        pin(0);
        for i in 0..items {
            let mut v = i;
            while let Err(PushError::Full(back)) = tx.try_push(v) {
                v = back;
                std::hint::spin_loop();
            }
        }
    });
    Box::new(move || {
        let mut n = 0;
        while n < items {
            match rx.try_pop() {
                Ok(v) => {
                    assert_eq!(v, n, "shmlink: sequence broken");
                    n += 1;
                }
                Err(_) => std::hint::spin_loop(),
            }
        }
        let _ = producer.join();
    })
}

/// A reference for batched 8 B messages: a bare ring of
/// 4096 words (8-byte stride, no stamps, roles, validation or wake-ups) moving
/// batches of [`BATCH`] between two pinned threads: what the copying costs alone.
fn copy_ceiling_run(items: u64) -> Box<dyn FnOnce() + Send> {
    const CAP: u64 = 4096;
    struct Bare {
        tail: shmlink::sync::CachePadded<AtomicU64>,
        head: shmlink::sync::CachePadded<AtomicU64>,
        words: Vec<AtomicU64>,
    }
    let bare = std::sync::Arc::new(Bare {
        tail: Default::default(),
        head: Default::default(),
        words: (0..CAP).map(|_| AtomicU64::new(0)).collect(),
    });
    let b = bare.clone();
    let producer = std::thread::spawn(move || {
        pin(0);
        let (mut tail, mut head) = (0u64, 0u64);
        while tail < items {
            let want = (BATCH as u64).min(items - tail);
            while tail + want - head > CAP {
                head = b.head.load(Ordering::Acquire);
                std::hint::spin_loop();
            }
            for pos in tail..tail + want {
                b.words[(pos % CAP) as usize].store(pos, Ordering::Relaxed);
            }
            tail += want;
            b.tail.store(tail, Ordering::Release);
        }
    });
    Box::new(move || {
        let (mut head, mut tail) = (0u64, 0u64);
        while head < items {
            if head == tail {
                tail = bare.tail.load(Ordering::Acquire);
                std::hint::spin_loop();
                continue;
            }
            let end = tail.min(head + BATCH as u64);
            for pos in head..end {
                let v = bare.words[(pos % CAP) as usize].load(Ordering::Relaxed);
                assert_eq!(v, pos, "copy ceiling: sequence broken");
            }
            head = end;
            bare.head.store(head, Ordering::Release);
        }
        let _ = producer.join();
    })
}

pub(crate) fn crossbeam_run(items: u64) -> Box<dyn FnOnce() + Send> {
    let (tx, rx) = crossbeam_channel::bounded::<u64>(4096);
    let producer = std::thread::spawn(move || {
        pin(0);
        for i in 0..items {
            if tx.send(i).is_err() {
                break;
            }
        }
    });
    Box::new(move || {
        for i in 0..items {
            match rx.recv() {
                Ok(v) => assert_eq!(v, i, "crossbeam: sequence broken"),
                Err(_) => break,
            }
        }
        let _ = producer.join();
    })
}

/// Runs the `rings` suite.
pub fn rings(json: bool, quick: bool) -> Result {
    let mut r = Runner::start("bench");
    let scale = if quick { 10 } else { 1 };
    let rt = 200_000 / scale;
    let rt_block = 50_000 / scale;
    let single = 20_000_000 / scale;
    let batched = 100_000_000 / scale;

    let mut out = Vec::new();
    let latency = |out: &mut Vec<Measurement>, name: &str, p: [f64; 3]| {
        out.push(Measurement::new(format!("{name} median"), "ns", p[0]));
        out.push(Measurement::new(format!("{name} p99"), "ns", p[1]));
        out.push(Measurement::new(format!("{name} p99.9"), "ns", p[2]));
        out.len() - 3
    };

    let floor = latency(
        &mut out,
        "raw atomic ping-pong (floor)",
        raw_floor(&mut r, rt)?,
    );
    let uds8 = latency(
        &mut out,
        "UDS ping-pong 8 B",
        uds_round_trips(&mut r, 8, rt_block)?,
    );
    let uds1k = latency(
        &mut out,
        "UDS ping-pong 1 KiB",
        uds_round_trips(&mut r, 1024, rt_block)?,
    );
    let cases: [(&str, usize, usize); 4] = [
        ("spsc round trip 8 B spin", floor, 0),
        ("spsc round trip 1 KiB spin", floor, 1),
        ("spsc round trip 8 B blocking", uds8, 2),
        ("spsc round trip 1 KiB blocking", uds1k, 3),
    ];
    for (name, base, which) in cases {
        let p = match which {
            0 => ring_round_trips::<u64>(&mut r, WaitMode::Spin, rt)?,
            1 => ring_round_trips::<[u8; 1024]>(&mut r, WaitMode::Spin, rt)?,
            2 => ring_round_trips::<u64>(&mut r, WaitMode::Blocking, rt_block)?,
            _ => ring_round_trips::<[u8; 1024]>(&mut r, WaitMode::Blocking, rt_block)?,
        };
        let at = latency(&mut out, name, p);
        for k in 0..3 {
            let m = Measurement::new(out[at + k].name.clone(), "ns", out[at + k].value)
                .against(&out[base + k]);
            out[at + k] = m;
        }
    }

    // Throughput is noisy on a shared 2-core machine (frequency, neighbours), so
    // every throughput case runs `reps` times, interleaved with its baseline, and
    // the median of each is reported: a slow spell hits both sides alike.
    let reps = if quick { 1 } else { 5 };
    let mut samples: [Vec<f64>; 7] = Default::default();
    for _ in 0..reps {
        samples[6].push(in_process(batched, copy_ceiling_run));
        samples[0].push(in_process(single, rtrb_run));
        samples[1].push(in_process(single, crossbeam_run));
        samples[2].push(in_process(single, shmlink_heap_run));
        samples[3].push(ring_throughput(&mut r, false, single)?);
        samples[4].push(ring_throughput(&mut r, true, batched)?);
        samples[5].push(mpmc_throughput(&mut r, single)?);
    }
    let [rtrb, xbeam, heap, tput_single, tput_batch, mpmc, ceiling] = samples.map(median);
    let rtrb = Measurement::new("rtrb in-process 8 B (baseline)", "msgs/s", rtrb);
    let xbeam = Measurement::new(
        "crossbeam bounded in-process 8 B (baseline)",
        "msgs/s",
        xbeam,
    );
    let heap = Measurement::new("spsc in-process (heap) 8 B single", "msgs/s", heap).against(&rtrb);
    let tput_single =
        Measurement::new("spsc throughput 8 B single", "msgs/s", tput_single).against(&rtrb);
    let tput_batch = Measurement::new(
        format!("spsc throughput 8 B batched ({BATCH})"),
        "msgs/s",
        tput_batch,
    )
    .against(&rtrb);
    let mpmc = Measurement::new(
        "mpmc throughput 8 B (1 producer, 1 consumer process)",
        "msgs/s",
        mpmc,
    )
    .against(&xbeam);
    let ceiling = Measurement::new(
        format!("bare word ring, batches of {BATCH} (reference)"),
        "msgs/s",
        ceiling,
    );
    let tput_batch_ceiling = Measurement::new(
        format!("spsc throughput 8 B batched ({BATCH}) vs bare ring"),
        "msgs/s",
        tput_batch.value,
    )
    .against(&ceiling);
    out.extend([
        rtrb,
        xbeam,
        ceiling,
        heap,
        tput_single,
        tput_batch,
        tput_batch_ceiling,
        mpmc,
    ]);

    if json {
        print_json(&out);
    } else {
        print_table(&out, &r);
    }
    Ok(())
}

/// The child side of a case.
pub fn child(case: &str, name: &str, iters: u64) -> Result {
    pin(1);
    match case {
        "raw" => {
            let region = ShmRegion::<PingPong>::open(builder(name))?;
            let s = region.shared();
            for i in 1..=iters {
                spin_until(&s.ping, i)?;
                s.pong.store(i, Ordering::Release);
            }
            Ok(())
        }
        "rt-8-spin" => ring_round_trip_child::<u64>(name, true, iters),
        "rt-1k-spin" => ring_round_trip_child::<[u8; 1024]>(name, true, iters),
        "rt-8-block" => ring_round_trip_child::<u64>(name, false, iters),
        "rt-1k-block" => ring_round_trip_child::<[u8; 1024]>(name, false, iters),
        "uds-8" => uds_child(name, 8, iters),
        "uds-1k" => uds_child(name, 1024, iters),
        "tput-single" => ring_throughput_child(name, false, iters),
        "tput-batch" => ring_throughput_child(name, true, iters),
        "mpmc-produce" => mpmc_produce_child(name, iters),
        other => Err(format!("unknown bench case {other}").into()),
    }
}
