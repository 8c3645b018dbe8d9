//! `shmlink inspect NAME [--json]`: one object's state, per kind: a ring's positions,
//! depth, capacity, wait mode, sleepers, role holders with their liveness and
//! repairs; a Bakery lock's holder and participants with tickets; a semaphore's value,
//! maximum and waiters; a seqlock's version and writer.

use shmlink::process::{Liveness, liveness, token_of};
use shmlink::segment::{self, Kind, Status};

use crate::Result;

/// A value of the report.
enum V {
    N(u64),
    S(String),
    B(bool),
    /// A list of records.
    L(Vec<Rec>),
}

type Rec = Vec<(&'static str, V)>;

fn alive(l: Liveness) -> V {
    V::B(!l.is_dead())
}

fn holders(list: &[shmlink::ring::RoleHolder]) -> V {
    V::L(
        list.iter()
            .map(|h| {
                vec![
                    ("pid", V::N(u64::from(h.pid))),
                    ("alive", alive(h.liveness)),
                ]
            })
            .collect(),
    )
}

/// The report on `name`.
fn report(name: &str) -> Result<Rec> {
    let info = segment::inspect(name)?;
    let mut rec: Rec = vec![("name", V::S(name.to_owned()))];
    let status = match &info.status {
        Status::Stale(s) => format!("stale ({s})"),
        Status::Invalid(e) => format!("invalid ({e})"),
        other => other.label().to_owned(),
    };
    rec.push(("status", V::S(status)));
    rec.push(("bytes", V::N(info.file_size)));
    let Some(h) = info.header else {
        return Ok(rec);
    };
    rec.push(("kind", V::S(crate::kind_label(h.kind, h.fingerprint))));
    if !h.type_name.is_empty() {
        rec.push(("type", V::S(h.type_name.to_string())));
    }
    let creator = token_of(h.creator.pid, h.creator.start_ticks);
    rec.push(("creator_pid", V::N(u64::from(h.creator.pid))));
    rec.push(("creator_alive", alive(liveness(creator))));
    rec.push(("attached", V::N(u64::from(h.attached))));
    let holders_map = crate::flock_holders();
    if let Some(live) = crate::live_attached(&holders_map, info.name.path()) {
        rec.push(("attached_alive", V::N(live as u64)));
    }
    if !matches!(info.status, Status::Alive | Status::Idle | Status::Stale(_)) {
        return Ok(rec); // being created, or not a valid segment
    }
    // A stale object is read as the crash left it (held exclusively meanwhile, never
    // attached or changed): who held what when its processes died.
    match Kind::from_code(h.kind) {
        Some(Kind::SpscRing | Kind::FrameRing | Kind::MpmcRing) => {
            let r = shmlink::ring::ring_status(name)?;
            rec.push(("capacity", V::N(r.capacity)));
            rec.push(("head", V::N(r.head)));
            rec.push(("tail", V::N(r.tail)));
            rec.push(("depth", V::N(r.depth())));
            let mode = r
                .mode
                .map_or_else(|| "invalid".to_owned(), |m| format!("{m:?}"));
            rec.push(("wait_mode", V::S(mode)));
            rec.push(("producers", holders(&r.producers)));
            rec.push(("consumers", holders(&r.consumers)));
            rec.push(("waiting_for_data", V::N(u64::from(r.waiting_for_data))));
            rec.push(("waiting_for_space", V::N(u64::from(r.waiting_for_space))));
            rec.push(("repaired_holes", V::N(r.holes)));
            rec.push(("lost_to_dead_consumers", V::N(r.lost)));
        }
        Some(Kind::BakeryLock | Kind::BakeryMutex) => {
            let l = shmlink::lock::bakery_status(name)?;
            rec.push((
                "holder_pid",
                l.holder.map_or(V::S("none".into()), |p| V::N(u64::from(p))),
            ));
            let parts = l
                .participants
                .iter()
                .map(|p| {
                    let state = crate::participant_state(p);
                    vec![
                        ("slot", V::N(p.slot as u64)),
                        ("pid", V::N(u64::from(p.pid))),
                        ("state", V::S(state.into())),
                        ("ticket", V::N(p.ticket)),
                        ("alive", alive(p.liveness)),
                    ]
                })
                .collect();
            rec.push(("participants", V::L(parts)));
        }
        Some(Kind::Semaphore) => {
            let s = shmlink::lock::semaphore_status(name)?;
            rec.push(("value", V::N(u64::from(s.value))));
            rec.push(("max", V::N(u64::from(s.max))));
            rec.push(("waiters", V::N(u64::from(s.waiters))));
            let holders = s
                .holders
                .iter()
                .map(|h| {
                    vec![
                        ("pid", V::N(u64::from(h.pid))),
                        ("permits", V::N(u64::from(h.permits))),
                        ("waiting", V::N(u64::from(h.waiting))),
                        ("alive", alive(h.liveness)),
                    ]
                })
                .collect();
            rec.push(("permit_holders", V::L(holders)));
        }
        Some(Kind::SeqLock) => {
            let s = shmlink::lock::seqlock_status(name)?;
            rec.push(("version", V::N(s.seq)));
            rec.push(("writing", V::B(s.seq % 2 == 1)));
            rec.push(("value_bytes", V::N(s.size)));
            match s.writer {
                Some((pid, l)) => {
                    rec.push(("writer_pid", V::N(u64::from(pid))));
                    rec.push(("writer_alive", alive(l)));
                }
                None => rec.push(("writer_pid", V::S("none".into()))),
            }
        }
        _ => {}
    }
    Ok(rec)
}

fn text(rec: &Rec, indent: usize, out: &mut String) {
    for (k, v) in rec {
        let pad = " ".repeat(indent);
        match v {
            V::N(n) => out.push_str(&format!("{pad}{k}: {n}\n")),
            V::S(s) => out.push_str(&format!("{pad}{k}: {s}\n")),
            V::B(b) => out.push_str(&format!("{pad}{k}: {}\n", if *b { "yes" } else { "no" })),
            V::L(items) if items.is_empty() => out.push_str(&format!("{pad}{k}: none\n")),
            V::L(items) => {
                out.push_str(&format!("{pad}{k}:\n"));
                for item in items {
                    let line: Vec<String> = item
                        .iter()
                        .map(|(k, v)| match v {
                            V::N(n) => format!("{k} {n}"),
                            V::S(s) => format!("{k} {s}"),
                            V::B(b) => format!("{k} {}", if *b { "yes" } else { "no" }),
                            V::L(_) => String::new(),
                        })
                        .collect();
                    out.push_str(&format!("{pad}  - {}\n", line.join(", ")));
                }
            }
        }
    }
}

fn json(rec: &Rec) -> String {
    let fields: Vec<String> = rec
        .iter()
        .map(|(k, v)| {
            let v = match v {
                V::N(n) => n.to_string(),
                V::S(s) => crate::bench::json_string(s),
                V::B(b) => b.to_string(),
                V::L(items) => format!(
                    "[{}]",
                    items.iter().map(json).collect::<Vec<_>>().join(", ")
                ),
            };
            format!("{}: {v}", crate::bench::json_string(k))
        })
        .collect();
    format!("{{{}}}", fields.join(", "))
}

/// Prints the report on `name`, as text or JSON.
pub fn inspect(name: &str, as_json: bool) -> Result {
    let rec = report(name).map_err(|e| format!("{name}: {e}"))?;
    if as_json {
        println!("{}", json(&rec));
    } else {
        let mut out = String::new();
        text(&rec, 0, &mut out);
        print!("{out}");
    }
    Ok(())
}

/// `shmlink watch NAME`: the ring's rates, refreshed every `every` until interrupted
/// (or `rounds` times): messages per second pushed and popped, depth, and the lag
/// (depth over the pop rate: how long the newest message waits).
pub fn watch(name: &str, every: std::time::Duration, rounds: Option<u64>) -> Result {
    use std::time::Instant;
    let mut last = shmlink::ring::ring_status(name).map_err(|e| format!("{name}: {e}"))?;
    let mut at = Instant::now();
    println!(
        "{:>12} {:>12} {:>8} {:>8} {:>10}  HOLDERS (producers | consumers)",
        "PUSHED/s", "POPPED/s", "DEPTH", "CAP", "LAG"
    );
    let mut round = 0u64;
    while rounds.is_none_or(|n| round < n) {
        round += 1;
        std::thread::sleep(every);
        let now = match shmlink::ring::ring_status(name) {
            Ok(now) => now,
            Err(segment::OpenError::NotFound) => {
                println!("{name}: removed");
                return Ok(());
            }
            Err(e) => return Err(format!("{name}: {e}").into()),
        };
        let secs = at.elapsed().as_secs_f64().max(1e-9);
        at = Instant::now();
        let pushed = now.tail.saturating_sub(last.tail) as f64 / secs;
        let popped = now.head.saturating_sub(last.head) as f64 / secs;
        let lag = if popped > 0.0 {
            format!("{:.1} ms", now.depth() as f64 / popped * 1e3)
        } else if now.depth() > 0 {
            "stalled".to_owned()
        } else {
            "-".to_owned()
        };
        let who = |l: &[shmlink::ring::RoleHolder]| {
            let v: Vec<String> = l
                .iter()
                .map(|h| {
                    let dead = if h.liveness.is_dead() { " dead" } else { "" };
                    format!("{}{dead}", h.pid)
                })
                .collect();
            if v.is_empty() {
                "-".to_owned()
            } else {
                v.join(",")
            }
        };
        println!(
            "{:>12.0} {:>12.0} {:>8} {:>8} {:>10}  {} | {}",
            pushed,
            popped,
            now.depth(),
            now.capacity,
            lag,
            who(&now.producers),
            who(&now.consumers)
        );
        last = now;
    }
    Ok(())
}
