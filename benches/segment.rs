//! Costs of the segment layer: create, open (with every header check) and drop.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use shmlink::segment::{Segment, ShmRegion};
use shmlink::sync::atomic::AtomicU64;

fn name(tag: &str) -> String {
    format!("bench-{tag}-{}", std::process::id())
}

fn segment(c: &mut Criterion) {
    let mut g = c.benchmark_group("segment");
    g.measurement_time(Duration::from_secs(3));

    let create = name("create");
    g.bench_function("create+drop 4 KiB (unlink on drop)", |b| {
        b.iter(|| {
            let s = Segment::builder(&create)
                .payload_len(4096)
                .unlink_on_drop(true)
                .create()
                .unwrap();
            black_box(&s);
        })
    });

    let open = name("open");
    let _owner = Segment::builder(&open)
        .payload_len(4096)
        .unlink_on_drop(true)
        .create()
        .unwrap();
    g.bench_function("open+drop 4 KiB (validated, attached)", |b| {
        b.iter(|| black_box(Segment::builder(&open).payload_len(4096).open().unwrap()))
    });

    let region = name("region");
    let _r =
        ShmRegion::<AtomicU64>::create(Segment::builder(&region).unlink_on_drop(true), 0).unwrap();
    g.bench_function("typed region open+drop", |b| {
        b.iter(|| black_box(ShmRegion::<AtomicU64>::open(Segment::builder(&region)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, segment);
criterion_main!(benches);
