//! `shmlink bench channels`: cross-process channels against same-run baselines.
//!
//! The parent pins itself to core 0 and its child processes (this binary,
//! `bench-child --case chan-*`) to core 1, where the machine allows it, and measures,
//! in one run, for a plain-old-data message (`u64`, the [`Raw`] codec) and for a serde
//! struct of about 100 encoded bytes ([`Quote`], the [`Postcard`] codec):
//! - one-way throughput from a sending child to the receiving parent, with
//!   asynchronous [`Sender::send`](shmlink::channel::Sender::send) (SPSC spinning and
//!   blocking, MPMC) and synchronous
//!   [`Sender::send_acked`](shmlink::channel::Sender::send_acked);
//! - round trips: a ping-pong over two channels, and the synchronous-send round trip
//!   (a `send_acked` of one message to a child that only receives: it returns once the
//!   child took it), the latter against a spinning SPSC ring ping-pong as in
//!   `shmlink bench rings`;
//! - baselines: crossbeam-channel bounded between two threads of this process (the
//!   messages passed by value, nothing encoded) and ipc-channel between processes
//!   (bincode over a Unix socket): throughput and round trip.
//!
//! Throughput cases are repeated and interleaved, and round-trip cases likewise, and
//! the median of each is reported, so that a slow spell of the machine (frequency,
//! neighbours) hits every case alike.

use std::sync::mpsc;
use std::time::Instant;

use ipc_channel::ipc::{self, IpcOneShotServer, IpcReceiver, IpcSender};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shmlink::channel::{Channel, Codec, Flavor, Options, Postcard, Raw, Receiver, TryRecvError};
use shmlink::sync::WaitMode;

use super::rings::{crossbeam_run, ring_round_trips};
use super::{
    Goal, LIMIT, Measurement, Runner, builder, finish, in_process, median, percentiles, pin,
    print_goal_table, print_json,
};
use crate::Result;

/// A message of the channel cases: how it travels, how it is made and checked.
trait Message: Serialize + DeserializeOwned + Send + 'static {
    /// The channel codec that carries it.
    type Wire: Codec<Self>;
    /// Its part of the child case names (`chan-{TAG}-...`).
    const TAG: &'static str;
    /// Channel options for it (capacity, maximum size); cases add flavour and mode.
    fn options() -> Options;
    /// Message number `seq`.
    fn make(seq: u64) -> Self;
    /// The number it was made with (`u64::MAX` if it arrived damaged).
    fn seq(&self) -> u64;
}

impl Message for u64 {
    type Wire = Raw;
    const TAG: &'static str = "pod";
    fn options() -> Options {
        // 4096 slots of 16 bytes (stamp and value): 64 KiB, as in `bench rings`.
        Options::new().capacity(4096)
    }
    fn make(seq: u64) -> Self {
        seq
    }
    fn seq(&self) -> u64 {
        *self
    }
}

/// The serde message: a market-data-like record of about 100 bytes in postcard
/// (varint integers: 9 bytes per timestamp, 4 per level), 125 in ipc-channel's
/// bincode (fixed-width integers). A `String` and a `Vec`, so building, encoding and
/// decoding one allocates, as real messages do.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Quote {
    id: u64,
    /// When it was sent, ns since the epoch.
    sent_ns: u64,
    /// When the exchange stamped it, ns since the epoch.
    exchange_ns: u64,
    symbol: String,
    price: f64,
    quantity: u32,
    /// Sixteen book levels.
    levels: Vec<u32>,
}

/// A 2026 timestamp in ns, so the timestamps encode at their real size.
const EPOCH_NS: u64 = 1_780_000_000_000_000_000;
const SYMBOL: &str = "ACME.XNAS";
const LEVELS: u32 = 16;

impl Message for Quote {
    type Wire = Postcard;
    const TAG: &'static str = "serde";
    fn options() -> Options {
        // 256 frames of up to 128 bytes: a 64 KiB frame ring.
        Options::new().capacity(256).max_message(128)
    }
    fn make(seq: u64) -> Self {
        Self {
            id: seq,
            sent_ns: EPOCH_NS + seq * 1_000,
            exchange_ns: EPOCH_NS + seq * 1_000 - 250,
            symbol: SYMBOL.to_owned(),
            price: 101.25 + (seq % 100) as f64 * 0.01,
            quantity: 100 + (seq % 900) as u32,
            levels: (0..LEVELS)
                .map(|k| 2_500_000 + 1_000 * k + (seq % 1_000) as u32)
                .collect(),
        }
    }
    fn seq(&self) -> u64 {
        if self.levels.len() == LEVELS as usize && self.symbol == SYMBOL {
            self.id
        } else {
            u64::MAX
        }
    }
}

type Chan<M> = Channel<M, <M as Message>::Wire>;

/// Takes the next message: `try_recv`, then a bounded wait if there was none (a child
/// that hangs must not hang the parent).
#[inline]
fn take<M: Message>(rx: &mut Receiver<M, M::Wire>) -> Result<M> {
    match rx.try_recv() {
        Ok(v) => Ok(v),
        Err(TryRecvError::Empty) => Ok(rx.recv_timeout(LIMIT)?),
        Err(e) => Err(e.into()),
    }
}

fn check(what: &str, got: u64, want: u64) -> Result {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: message {got} where {want} was due").into())
    }
}

/// Runs the parent's side `body` of case `case` with `child`, then reaps the child
/// whatever happened (the body's error first, named after the case).
fn with_child<X>(
    case: &str,
    child: std::process::Child,
    body: impl FnOnce() -> Result<X>,
) -> Result<X> {
    let out = body();
    let done = finish(child);
    let named = |e: Box<dyn std::error::Error>| format!("{case}: {e}");
    let out = out.map_err(named)?;
    done.map_err(named)?;
    Ok(out)
}

/// Messages per second the parent receives from a child that sends `items` of them
/// (`send_acked` if `acked`), from the first message received to the last.
fn channel_throughput<M: Message>(
    r: &mut Runner,
    opts: Options,
    acked: bool,
    items: u64,
) -> Result<f64> {
    let name = r.name("tput");
    let ch = Chan::<M>::create(builder(&name).unlink_on_drop(true), opts)?;
    let mut rx = ch.receiver()?;
    let case = format!("chan-{}-{}", M::TAG, if acked { "acked" } else { "send" });
    let child = r.child(&case, &name, items)?;
    with_child(&format!("{case} {opts:?}"), child, || {
        check("throughput", take(&mut rx)?.seq(), 0)?;
        let started = Instant::now();
        for i in 1..items {
            let v = take(&mut rx).map_err(|e| format!("message {i} of {items}: {e}"))?;
            check("throughput", v.seq(), i)?;
        }
        Ok((items - 1) as f64 / started.elapsed().as_secs_f64())
    })
}

/// Ping-pong over two channels (the child echoes): round-trip percentiles, ns.
fn channel_ping_pong<M: Message>(r: &mut Runner, opts: Options, iters: u64) -> Result<[f64; 3]> {
    let (req, rep) = (r.name("req"), r.name("rep"));
    let a = Chan::<M>::create(builder(&req).unlink_on_drop(true), opts)?;
    let b = Chan::<M>::create(builder(&rep).unlink_on_drop(true), opts)?;
    let mut tx = a.sender()?;
    let mut rx = b.receiver()?;
    let case = format!("chan-{}-echo", M::TAG);
    let child = r.child(&case, &format!("{req},{rep}"), iters)?;
    with_child(&format!("{case} {opts:?}"), child, || {
        let mut samples = Vec::with_capacity(iters as usize);
        for i in 0..iters {
            let m = M::make(i);
            let t = Instant::now();
            tx.send(m)?;
            let v = take(&mut rx)?;
            samples.push(t.elapsed());
            check("ping-pong", v.seq(), i)?;
        }
        Ok(percentiles(samples))
    })
}

/// The synchronous-send round trip: `send_acked` of one message to a child that only
/// receives; percentiles of the time until it returns, ns.
fn acked_round_trips<M: Message>(r: &mut Runner, opts: Options, iters: u64) -> Result<[f64; 3]> {
    let name = r.name("ack");
    let ch = Chan::<M>::create(builder(&name).unlink_on_drop(true), opts)?;
    let mut tx = ch.sender()?;
    let case = format!("chan-{}-recv", M::TAG);
    let child = r.child(&case, &name, iters)?;
    with_child(&format!("{case} {opts:?}"), child, || {
        let mut samples = Vec::with_capacity(iters as usize);
        for i in 0..iters {
            let m = M::make(i);
            let t = Instant::now();
            tx.send_acked(m)?;
            samples.push(t.elapsed());
        }
        Ok(percentiles(samples))
    })
}

/// Accepts the child's connection to `server`, giving up after [`LIMIT`] (the accept
/// itself cannot time out, so it waits on a helper thread that a failed run leaves
/// behind).
fn ipc_accept<T>(server: IpcOneShotServer<T>) -> Result<(IpcReceiver<T>, T)>
where
    T: Serialize + DeserializeOwned + Send + 'static,
{
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(server.accept().map_err(|e| e.to_string()));
    });
    match result.recv_timeout(LIMIT) {
        Ok(accepted) => Ok(accepted?),
        Err(_) => Err("ipc-channel: the child never connected".into()),
    }
}

/// As [`channel_throughput`] over ipc-channel: the child connects to a one-shot server
/// and sends `items` messages on that connection.
fn ipc_throughput<M: Message>(r: &mut Runner, items: u64) -> Result<f64> {
    let (server, name) = IpcOneShotServer::<M>::new()?;
    let case = format!("chan-ipc-{}-send", M::TAG);
    let child = r.child(&case, &name, items)?;
    with_child(&case, child, || {
        let (rx, first) = ipc_accept(server)?;
        check("ipc throughput", first.seq(), 0)?;
        let started = Instant::now();
        for i in 1..items {
            check("ipc throughput", rx.recv()?.seq(), i)?;
        }
        Ok((items - 1) as f64 / started.elapsed().as_secs_f64())
    })
}

/// The two ends the ipc-channel echo child hands the parent: where to send requests,
/// where replies come from.
type IpcPair<M> = (IpcSender<M>, IpcReceiver<M>);

/// As [`channel_ping_pong`] over two ipc-channel channels.
fn ipc_ping_pong<M: Message>(r: &mut Runner, iters: u64) -> Result<[f64; 3]> {
    let (server, name) = IpcOneShotServer::<IpcPair<M>>::new()?;
    let case = format!("chan-ipc-{}-echo", M::TAG);
    let child = r.child(&case, &name, iters)?;
    with_child(&case, child, || {
        let (_boot, (tx, rx)) = ipc_accept(server)?;
        let mut samples = Vec::with_capacity(iters as usize);
        for i in 0..iters {
            let m = M::make(i);
            let t = Instant::now();
            tx.send(m)?;
            let v = rx.recv()?;
            samples.push(t.elapsed());
            check("ipc ping-pong", v.seq(), i)?;
        }
        Ok(percentiles(samples))
    })
}

/// Two pinned threads pass `items` [`Quote`]s by value through a crossbeam-channel
/// bounded channel (the in-process baseline: nothing encoded).
fn crossbeam_quote_run(items: u64) -> Box<dyn FnOnce() + Send> {
    let (tx, rx) = crossbeam_channel::bounded::<Quote>(1024);
    let producer = std::thread::spawn(move || {
        pin(0);
        for i in 0..items {
            if tx.send(Quote::make(i)).is_err() {
                break;
            }
        }
    });
    Box::new(move || {
        for i in 0..items {
            match rx.recv() {
                Ok(v) => assert_eq!(v.seq(), i, "crossbeam: sequence broken"),
                Err(_) => break,
            }
        }
        let _ = producer.join();
    })
}

/// Iteration counts of one run.
struct Plan {
    /// Repetitions of every case (interleaved; medians reported).
    reps: usize,
    /// Messages per throughput run: 8 B async, 8 B acked, serde async, serde acked,
    /// ipc-channel.
    pod: u64,
    pod_acked: u64,
    serde: u64,
    serde_acked: u64,
    ipc: u64,
    /// Round trips per round-trip run: shared memory, ipc-channel.
    rt: u64,
    ipc_rt: u64,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let s = if quick { 10 } else { 1 };
        Self {
            reps: if quick { 1 } else { 5 },
            pod: 5_000_000 / s,
            pod_acked: 500_000 / s,
            serde: 1_000_000 / s,
            serde_acked: 250_000 / s,
            ipc: 100_000 / s,
            rt: 100_000 / s,
            ipc_rt: 20_000 / s,
        }
    }
}

/// One channel throughput case.
struct Stream {
    /// Message, flavour, mode and send call, for the result's name.
    name: String,
    /// [`Quote`]s if set, else `u64`s.
    quote: bool,
    opts: Options,
    acked: bool,
}

impl Stream {
    fn new(name: String, quote: bool, opts: Options, acked: bool) -> Self {
        Self {
            name,
            quote,
            opts,
            acked,
        }
    }

    fn run(&self, r: &mut Runner, p: &Plan) -> Result<f64> {
        match (self.quote, self.acked) {
            (false, false) => channel_throughput::<u64>(r, self.opts, false, p.pod),
            (false, true) => channel_throughput::<u64>(r, self.opts, true, p.pod_acked),
            (true, false) => channel_throughput::<Quote>(r, self.opts, false, p.serde),
            (true, true) => channel_throughput::<Quote>(r, self.opts, true, p.serde_acked),
        }
    }
}

/// A ratio target next to a result line.
fn print_table(results: &[Measurement], goals: &[Option<Goal>], r: &Runner, quote: usize) {
    print_goal_table(
        &format!(
            "shmlink bench channels ({}; Quote = {quote} B postcard)",
            r.placement("parent", "child")
        ),
        "lower is better for ns, higher for msgs/s",
        results,
        goals,
    );
}

// Plain functions, not closures: rustc 1.95 miscompiles two closures called with
// copies of one by-value argument that they modify in place (rust-lang/rust#155241,
// "rust-call" arguments passed by pointer): `spin(pod)` after `mpmc(pod)` came out
// MPMC, so SPSC cases silently ran on MPMC channels.

/// `o` with spinning waits.
fn spin(o: Options) -> Options {
    o.wait_mode(WaitMode::Spin)
}

/// `o` as an MPMC channel with spinning waits.
fn mpmc(o: Options) -> Options {
    o.wait_mode(WaitMode::Spin).flavor(Flavor::Mpmc)
}

/// A throughput row.
fn row(name: String, v: f64) -> Measurement {
    Measurement::new(name, "msgs/s", v)
}

/// A median and a p99 row, each against the same row of `base`; `goal` on the median.
fn against(
    ms: [Measurement; 2],
    base: &[Measurement; 2],
    goal: Option<Goal>,
) -> [(Measurement, Option<Goal>); 2] {
    let [m50, m99] = ms;
    [(m50.against(&base[0]), goal), (m99.against(&base[1]), None)]
}

/// Runs the `channels` suite.
pub fn channels(json: bool, quick: bool) -> Result {
    let mut r = Runner::start("bench-chan");
    let p = Plan::new(quick);
    let quote_bytes = postcard::to_allocvec(&Quote::make(100_000))?.len();
    let q = format!("Quote {quote_bytes} B");
    let pod = u64::options();
    let serde = Quote::options();
    let streams = [
        Stream::new("8 B SPSC spin, send".into(), false, spin(pod), false),
        Stream::new("8 B SPSC blocking, send".into(), false, pod, false),
        Stream::new("8 B MPMC spin, send".into(), false, mpmc(pod), false),
        Stream::new(format!("{q} SPSC spin, send"), true, spin(serde), false),
        Stream::new(format!("{q} SPSC blocking, send"), true, serde, false),
        Stream::new(format!("{q} MPMC spin, send"), true, mpmc(serde), false),
        Stream::new("8 B SPSC spin, send_acked".into(), false, spin(pod), true),
        Stream::new(
            format!("{q} SPSC spin, send_acked"),
            true,
            spin(serde),
            true,
        ),
    ];

    // Throughput, msgs/s: the four baselines, then the channel streams.
    let mut t = vec![Vec::with_capacity(p.reps); 4 + streams.len()];
    for _ in 0..p.reps {
        t[0].push(in_process(p.pod, crossbeam_run));
        t[1].push(in_process(p.serde, crossbeam_quote_run));
        t[2].push(ipc_throughput::<u64>(&mut r, p.ipc)?);
        t[3].push(ipc_throughput::<Quote>(&mut r, p.ipc)?);
        for (k, s) in streams.iter().enumerate() {
            t[4 + k].push(s.run(&mut r, &p)?);
        }
    }
    let t: Vec<f64> = t.into_iter().map(median).collect();

    // Round trips, [median, p99] ns, of: the spin ring, ipc-channel 8 B and Quote,
    // channel ping-pongs 8 B and Quote, synchronous sends 8 B and Quote (spin), 8 B
    // blocking, 8 B MPMC.
    let mut l: [Vec<[f64; 3]>; 9] = Default::default();
    for _ in 0..p.reps {
        l[0].push(ring_round_trips::<u64>(&mut r, WaitMode::Spin, p.rt)?);
        l[1].push(ipc_ping_pong::<u64>(&mut r, p.ipc_rt)?);
        l[2].push(ipc_ping_pong::<Quote>(&mut r, p.ipc_rt)?);
        l[3].push(channel_ping_pong::<u64>(&mut r, spin(pod), p.rt)?);
        l[4].push(channel_ping_pong::<Quote>(&mut r, spin(serde), p.rt)?);
        l[5].push(acked_round_trips::<u64>(&mut r, spin(pod), p.rt)?);
        l[6].push(acked_round_trips::<Quote>(&mut r, spin(serde), p.rt)?);
        l[7].push(acked_round_trips::<u64>(&mut r, pod, p.rt)?);
        l[8].push(acked_round_trips::<u64>(&mut r, mpmc(pod), p.rt)?);
    }
    let l = l.map(|runs| {
        let at = |k: usize| median(runs.iter().map(|p| p[k]).collect());
        [at(0), at(1)]
    });

    let mut out: Vec<(Measurement, Option<Goal>)> = Vec::new();
    let xb = [
        row("crossbeam bounded in-process, 8 B (baseline)".into(), t[0]),
        row(
            format!("crossbeam bounded in-process, {q} by value (baseline)"),
            t[1],
        ),
    ];
    let ipc = [
        row("ipc-channel, 8 B (baseline)".into(), t[2]),
        row(format!("ipc-channel, {q} (baseline)"), t[3]),
    ];
    // A synchronous send is a message there and an acknowledgement back: its rate
    // compares with ipc-channel's request/reply rate (1 / round-trip median).
    let ipc_rr = [
        row(
            "ipc-channel request/reply rate, 8 B (baseline)".into(),
            1e9 / l[1][0],
        ),
        row(
            format!("ipc-channel request/reply rate, {q} (baseline)"),
            1e9 / l[2][0],
        ),
    ];
    let mut context = Vec::new();
    for (s, &v) in streams.iter().zip(&t[4..]) {
        let k = usize::from(s.quote);
        let name = format!("channel throughput {}", s.name);
        context.push(row(format!("{name} vs crossbeam"), v).against(&xb[k]));
        if s.acked {
            // Not a streaming rate: the goal is for asynchronous sends.
            context.push(row(format!("{name} vs ipc stream"), v).against(&ipc[k]));
            out.push((row(name, v).against(&ipc_rr[k]), None));
        } else {
            out.push((row(name, v).against(&ipc[k]), Some(Goal::AtLeast(10.0))));
        }
    }
    let baselines = xb.into_iter().chain(ipc).chain(ipc_rr);
    out.splice(0..0, baselines.map(|m| (m, None)));
    out.extend(context.into_iter().map(|m| (m, None)));

    // Round trips: baselines, then the ping-pongs against ipc-channel and the
    // synchronous sends against the spin ring (the goal for 8 B).
    let lat = |name: &str, v: [f64; 2]| {
        [
            Measurement::new(format!("{name} median"), "ns", v[0]),
            Measurement::new(format!("{name} p99"), "ns", v[1]),
        ]
    };
    let ring = lat(
        "spsc ring round trip 8 B spin (baseline, as bench rings)",
        l[0],
    );
    let ipc8 = lat("ipc-channel round trip 8 B (baseline)", l[1]);
    let ipcq = lat(&format!("ipc-channel round trip {q} (baseline)"), l[2]);
    let rows = [
        against(lat("channel ping-pong 8 B SPSC spin", l[3]), &ipc8, None),
        against(
            lat(&format!("channel ping-pong {q} SPSC spin"), l[4]),
            &ipcq,
            None,
        ),
        against(
            lat("channel ping-pong 8 B SPSC spin, vs ring", l[3]),
            &ring,
            None,
        ),
        against(
            lat("channel sync-send round trip 8 B SPSC spin", l[5]),
            &ring,
            Some(Goal::AtMost(1.2)),
        ),
        against(
            lat(&format!("channel sync-send round trip {q} SPSC spin"), l[6]),
            &ring,
            None,
        ),
        against(
            lat("channel sync-send round trip 8 B SPSC blocking", l[7]),
            &ring,
            None,
        ),
        against(
            lat("channel sync-send round trip 8 B MPMC spin", l[8]),
            &ring,
            None,
        ),
    ];
    for base in [ring, ipc8, ipcq] {
        out.extend(base.map(|m| (m, None)));
    }
    out.extend(rows.into_iter().flatten());

    let (results, goals): (Vec<_>, Vec<_>) = out.into_iter().unzip();
    if json {
        print_json(&results);
    } else {
        print_table(&results, &goals, &r, quote_bytes);
    }
    Ok(())
}

/// Child: sends `items` messages (acknowledged if `acked`) into the named channel.
fn send_child<M: Message>(name: &str, acked: bool, items: u64) -> Result {
    let ch = Chan::<M>::open(builder(name))?;
    let mut tx = ch.sender()?;
    for i in 0..items {
        if acked {
            tx.send_acked(M::make(i))?;
        } else {
            tx.send(M::make(i))?;
        }
    }
    Ok(())
}

/// Child: receives `iters` messages from the named channel, in order.
fn recv_child<M: Message>(name: &str, iters: u64) -> Result {
    let ch = Chan::<M>::open(builder(name))?;
    let mut rx = ch.receiver()?;
    for i in 0..iters {
        check("receiver", rx.recv()?.seq(), i)?;
    }
    Ok(())
}

/// Child: echoes `iters` messages from the request channel to the reply channel.
fn echo_child<M: Message>(names: &str, iters: u64) -> Result {
    let (req, rep) = names.split_once(',').ok_or("bad names")?;
    let a = Chan::<M>::open(builder(req))?;
    let b = Chan::<M>::open(builder(rep))?;
    let mut rx = a.receiver()?;
    let mut tx = b.sender()?;
    for _ in 0..iters {
        tx.send(rx.recv()?)?;
    }
    Ok(())
}

/// Child: connects to the parent's ipc-channel server and sends `items` messages.
fn ipc_send_child<M: Message>(server: &str, items: u64) -> Result {
    let tx = IpcSender::<M>::connect(server.to_owned())?;
    for i in 0..items {
        tx.send(M::make(i))?;
    }
    Ok(())
}

/// Child: hands the parent a request sender and a reply receiver over its
/// ipc-channel server, then echoes `iters` messages.
fn ipc_echo_child<M: Message>(server: &str, iters: u64) -> Result {
    let boot = IpcSender::<IpcPair<M>>::connect(server.to_owned())?;
    let (req_tx, req_rx) = ipc::channel::<M>()?;
    let (rep_tx, rep_rx) = ipc::channel::<M>()?;
    boot.send((req_tx, rep_rx))?;
    for _ in 0..iters {
        rep_tx.send(req_rx.recv()?)?;
    }
    Ok(())
}

/// The child side of a `chan-*` case.
pub fn child(case: &str, name: &str, iters: u64) -> Result {
    pin(1);
    match case {
        "chan-pod-send" => send_child::<u64>(name, false, iters),
        "chan-pod-acked" => send_child::<u64>(name, true, iters),
        "chan-serde-send" => send_child::<Quote>(name, false, iters),
        "chan-serde-acked" => send_child::<Quote>(name, true, iters),
        "chan-pod-recv" => recv_child::<u64>(name, iters),
        "chan-serde-recv" => recv_child::<Quote>(name, iters),
        "chan-pod-echo" => echo_child::<u64>(name, iters),
        "chan-serde-echo" => echo_child::<Quote>(name, iters),
        "chan-ipc-pod-send" => ipc_send_child::<u64>(name, iters),
        "chan-ipc-serde-send" => ipc_send_child::<Quote>(name, iters),
        "chan-ipc-pod-echo" => ipc_echo_child::<u64>(name, iters),
        "chan-ipc-serde-echo" => ipc_echo_child::<Quote>(name, iters),
        other => Err(format!("unknown bench case {other}").into()),
    }
}
