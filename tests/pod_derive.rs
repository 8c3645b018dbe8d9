//! `#[derive(Pod)]`: the types it accepts work in rings, and the fingerprint it
//! derives changes with every change of layout (what it refuses is in the doc tests of
//! `shmlink::region::Pod`, as `compile_fail` examples).

use shmlink::region::Pod;
use shmlink::ring::Spsc;
use shmlink::sync::WaitMode;

mod v1 {
    use shmlink::region::Pod;

    #[derive(Clone, Copy, Debug, PartialEq, Pod)]
    #[repr(C)]
    pub struct Order {
        pub id: u64,
        pub qty: u32,
        pub side: u32,
    }
}

/// The same fields, in another order.
mod reordered {
    use shmlink::region::Pod;

    #[derive(Clone, Copy, Pod)]
    #[repr(C)]
    pub struct Order {
        pub id: u64,
        pub side: u32,
        pub qty: u32,
    }
}

/// A field renamed.
mod renamed {
    use shmlink::region::Pod;

    #[derive(Clone, Copy, Pod)]
    #[repr(C)]
    pub struct Order {
        pub id: u64,
        pub quantity: u32,
        pub side: u32,
    }
}

/// A field of another type of the same size.
mod retyped {
    use shmlink::region::Pod;

    #[derive(Clone, Copy, Pod)]
    #[repr(C)]
    pub struct Order {
        pub id: u64,
        pub qty: f32,
        pub side: u32,
    }
}

/// The same layout, declared again elsewhere (another program, say).
mod again {
    use shmlink::region::Pod;

    #[derive(Clone, Copy, Pod)]
    #[repr(C)]
    pub struct Order {
        pub id: u64,
        pub qty: u32,
        pub side: u32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Pod)]
#[repr(C)]
struct Pair(u32, u32);

#[derive(Clone, Copy, Debug, PartialEq, Pod)]
#[repr(transparent)]
struct Price(u64);

/// Other `repr` hints are taken along: a raised alignment that adds no padding, and
/// packing.
#[derive(Clone, Copy, Debug, PartialEq, Pod)]
#[repr(C, align(16))]
struct Aligned([u64; 2]);

#[derive(Clone, Copy, Debug, PartialEq, Pod)]
#[repr(C, packed(2))]
struct Packed {
    a: u16,
    b: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Pod)]
#[repr(C)]
struct Book {
    bids: [v1::Order; 2],
    best: Price,
}

#[test]
fn derived_types_travel_through_a_ring() {
    let ring = Spsc::<Book, _>::new(8, WaitMode::Spin).unwrap();
    let (mut tx, mut rx) = (ring.producer().unwrap(), ring.consumer().unwrap());
    let order = v1::Order {
        id: 7,
        qty: 100,
        side: 1,
    };
    let book = Book {
        bids: [order; 2],
        best: Price(12_345),
    };
    tx.push(book).unwrap();
    assert_eq!(rx.try_pop(), Ok(book));
    let pairs = Spsc::<Pair, _>::new(8, WaitMode::Spin).unwrap();
    pairs.producer().unwrap().push(Pair(1, 2)).unwrap();
    assert_eq!(pairs.consumer().unwrap().try_pop(), Ok(Pair(1, 2)));
    let aligned = Spsc::<Aligned, _>::new(8, WaitMode::Spin).unwrap();
    aligned.producer().unwrap().push(Aligned([3, 4])).unwrap();
    assert_eq!(aligned.consumer().unwrap().try_pop(), Ok(Aligned([3, 4])));
    let packed = Spsc::<Packed, _>::new(8, WaitMode::Spin).unwrap();
    packed
        .producer()
        .unwrap()
        .push(Packed { a: 5, b: 6 })
        .unwrap();
    assert_eq!(
        packed.consumer().unwrap().try_pop(),
        Ok(Packed { a: 5, b: 6 })
    );
}

#[test]
fn the_fingerprint_follows_the_layout() {
    let v1 = v1::Order::FINGERPRINT;
    assert_eq!(v1, again::Order::FINGERPRINT, "the same layout agrees");
    for (what, other) in [
        ("reordered", reordered::Order::FINGERPRINT),
        ("renamed", renamed::Order::FINGERPRINT),
        ("retyped", retyped::Order::FINGERPRINT),
    ] {
        assert_ne!(v1, other, "a {what} field changes the fingerprint");
    }
    assert_ne!(
        Price::FINGERPRINT,
        u64::FINGERPRINT,
        "a newtype is its own type"
    );
}
