//! A sensor stream over a named channel, with a slow consumer: run the two roles in two
//! terminals (either may start first), or both from one command.
//!
//! ```sh
//! cargo run --release --example sensor_stream -- consume   # terminal 1
//! cargo run --release --example sensor_stream -- produce   # terminal 2
//! cargo run --release --example sensor_stream              # both, as two processes
//! ```
//!
//! The producer sends 20,000 readings asynchronously (`send` returns once a reading is
//! enqueued, so it runs ahead until the 256-slot channel is full, then waits for the
//! consumer), then one calibration command synchronously (`send_acked` returns only
//! once the consumer has taken it). The consumer takes a reading every 20 µs, so the
//! producer spends most of its time waiting for room. Stop either side with Ctrl-C:
//! the other notices (the channel reports the peer as disconnected). Start it again
//! and it goes on: the channel, left stale by the stopped side, is resumed with what
//! was sent into it and not yet received.

use std::process::Command;
use std::time::{Duration, Instant};

use shmlink::channel::{AckError, Channel, ChannelError, Options, RecvTimeoutError};
use shmlink::region::Pod;
use shmlink::segment::{Disposition, Segment};

/// One sensor reading: plain old data, copied as is into shared memory (the derive
/// checks at compile time that it is: repr(C), no padding, plain fields).
#[derive(Clone, Copy, Debug, Default, PartialEq, Pod)]
#[repr(C)]
struct Reading {
    seq: u64,
    sensor: u32,
    /// 0 for a reading, 1 for a calibration command.
    kind: u32,
    celsius: f64,
}

const NAME: &str = "example-sensor-stream";
const READINGS: u64 = 20_000;

fn channel() -> Result<Channel<Reading>, ChannelError> {
    // Whoever comes first creates the channel; the other opens it. After a Ctrl-C or
    // a kill -9 of both sides the channel is resumed, with the readings sent and not
    // yet received.
    let (ch, how) = Channel::open_or_create(Segment::builder(NAME), Options::new().capacity(256))?;
    match how {
        Disposition::Resumed => println!(
            "[{}] resumed the channel an interrupted run left",
            std::process::id()
        ),
        Disposition::Replaced => println!(
            "[{}] replaced a channel an interrupted run left",
            std::process::id()
        ),
        Disposition::Created | Disposition::Opened => {}
    }
    Ok(ch)
}

fn produce() -> Result<(), Box<dyn std::error::Error>> {
    let ch = channel()?;
    let mut tx = ch.sender()?;
    let started = Instant::now();
    for seq in 0..READINGS {
        let reading = Reading {
            seq,
            sensor: 7,
            kind: 0,
            celsius: 20.0 + (seq % 100) as f64 / 10.0,
        };
        tx.send(reading)
            .map_err(|e| format!("reading {seq}: {e}"))?;
    }
    let sent = started.elapsed();
    println!(
        "[producer {}] {READINGS} readings enqueued in {:.1} ms (the consumer sets the pace)",
        std::process::id(),
        sent.as_secs_f64() * 1e3
    );
    let calibrate = Reading {
        seq: READINGS,
        sensor: 7,
        kind: 1,
        celsius: 0.0,
    };
    let t = Instant::now();
    match tx.send_acked_timeout(calibrate, Duration::from_secs(30)) {
        Ok(()) => println!(
            "[producer] calibration taken by the consumer {:.1} ms after sending (it first drained the readings before it)",
            t.elapsed().as_secs_f64() * 1e3
        ),
        Err(AckError::Unacknowledged { disconnected: true }) => {
            println!("[producer] the consumer left before taking the calibration");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

fn consume() -> Result<(), Box<dyn std::error::Error>> {
    let ch = channel()?;
    let mut rx = ch.receiver()?;
    let mut expected = 0;
    let started = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(r) if r.kind == 1 => {
                println!(
                    "[consumer {}] calibration command received after {expected} readings, all in order, in {:.1} ms",
                    std::process::id(),
                    started.elapsed().as_secs_f64() * 1e3
                );
            }
            Ok(r) => {
                // A resumed channel first delivers what an interrupted producer left;
                // a producer started again begins at 0.
                if r.seq != expected && (expected == 0 || r.seq == 0) {
                    println!(
                        "[consumer] readings go on at {} after {expected}: another producer run",
                        r.seq
                    );
                    expected = r.seq;
                }
                assert_eq!(r.seq, expected, "readings arrive in order, once");
                expected += 1;
                // A slow consumer: 20 µs of "work" per reading.
                let until = Instant::now() + Duration::from_micros(20);
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
            }
            Err(RecvTimeoutError::Disconnected) => {
                println!("[consumer] the producer is gone and everything it sent was read");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    match std::env::args().nth(1).as_deref() {
        Some("produce") => produce(),
        Some("consume") => consume(),
        None => {
            // Both roles, as two processes (a channel an interrupted run left is
            // resumed by whichever starts first).
            let exe = std::env::current_exe()?;
            let mut consumer = Command::new(&exe).arg("consume").spawn()?;
            let mut producer = Command::new(&exe).arg("produce").spawn()?;
            let (p, c) = (producer.wait()?, consumer.wait()?);
            let _ = shmlink::segment::unlink(NAME);
            if !(p.success() && c.success()) {
                return Err(format!("producer {p}, consumer {c}").into());
            }
            Ok(())
        }
        Some(other) => Err(format!("unknown role {other:?}: use produce or consume").into()),
    }
}
