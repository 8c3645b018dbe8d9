//! Remote procedure calls over any [`transport`](crate::transport): the same
//! service code runs over shared memory, Unix domain sockets and TCP.
//!
//! A service is declared once with [`service!`](crate::service): a trait the server
//! implements, a client stub, and a server adapter that dispatches frames to the trait.
//! Requests, responses and the service's error type are serde types (encoded with
//! postcard).
//!
//! - **Many calls in flight** per connection: every call has an id; responses come
//!   back in any order. The client has no background thread: a caller waiting for its
//!   response reads the connection and hands other callers' responses over.
//! - **Deadlines** travel with the call (as a time budget, so clocks need not agree).
//!   The server does not start a call whose deadline passed, and a handler sees the
//!   deadline (and cancellation) through its [`Context`].
//! - **Cancellation**: dropping a [`Call`] or [`CallStream`] before it finished tells
//!   the server, whose [`Context::is_cancelled`] turns true.
//! - **Errors** ([`RpcError`]) separate the service's own error from deadline
//!   exceeded, server gone, transport failures and protocol violations.
//! - **Server streaming**: `stream fn` methods answer one request with a stream of
//!   items, with credit-based flow control (the server's [`Sink::send`] waits when
//!   the client is [`STREAM_WINDOW`] items behind).
//! - **Servers** ([`Server`]) run handlers on a worker pool (or inline on each
//!   connection's reader thread, for the lowest latency), serve many clients, and shut
//!   down gracefully.
//!
//! # Examples
//!
//! ```
//! use std::sync::Arc;
//! use shmlink::rpc::{Context, RpcError, Server, Sink};
//!
//! #[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
//! pub enum CalcError { DivideByZero }
//! impl std::fmt::Display for CalcError {
//!     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
//!         f.write_str("division by zero")
//!     }
//! }
//!
//! shmlink::service! {
//!     /// A calculator.
//!     pub trait Calc {
//!         client CalcClient;
//!         server CalcServer;
//!         error CalcError;
//!         /// `a / b`.
//!         fn div(args: (i64, i64)) -> i64;
//!         /// `0, 1, .., n - 1`.
//!         stream fn count(n: u32) -> u32;
//!     }
//! }
//!
//! struct MyCalc;
//! impl Calc for MyCalc {
//!     fn div(&self, _ctx: &Context, (a, b): (i64, i64)) -> Result<i64, CalcError> {
//!         if b == 0 { Err(CalcError::DivideByZero) } else { Ok(a / b) }
//!     }
//!     fn count(&self, _ctx: &Context, n: u32, sink: &mut Sink<'_, u32>) -> Result<(), CalcError> {
//!         for i in 0..n {
//!             if sink.send(&i).is_err() { break; } // the client went away
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # let url = format!("shm://doc-rpc-{}", std::process::id());
//! let server = Server::new(CalcServer(MyCalc)).serve(&url)?;
//! let client = CalcClient::connect(&url)?;
//! assert_eq!(client.div((7, 2)).wait()?, 3);
//! assert!(matches!(client.div((1, 0)).wait(), Err(RpcError::Service(CalcError::DivideByZero))));
//! let items: Vec<u32> = client.count(4).collect::<Result<_, _>>()?;
//! assert_eq!(items, [0, 1, 2, 3]);
//! server.shutdown(std::time::Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]

mod client;
mod error;
pub(crate) mod handoff;
pub(crate) mod pool;
mod server;
pub(crate) mod stop;
pub mod wire;

use std::sync::Arc;

use std::time::{Duration, Instant};

pub use client::{Call, CallStream, Client, ClientOptions};
pub use error::{ConnectError, NoError, RpcError, TransportFailure};
pub use server::{
    Responder, Server, ServerHandle, ServerStats, Sink, StreamClosed, StreamSender, TryStreamError,
};

/// Items a streaming call may run ahead of its consumer before [`Sink::send`] waits.
pub const STREAM_WINDOW: u64 = 64;

/// Default time budget of a call when the client sets none.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A hasher for call ids (sequential `u64`s chosen by the client): one multiply
/// instead of SipHash. A hostile client choosing colliding ids only slows its own
/// connection's table.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, n: u64) {
        // Fibonacci hashing: the high bits, which hashbrown uses, depend on all of n.
        self.0 = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// Call-id keyed map.
pub(crate) type IdMap<V> =
    std::collections::HashMap<u64, V, std::hash::BuildHasherDefault<IdHasher>>;

pub use stop::Stop;
pub(crate) use stop::StopSignal as CallCtl;

/// What a handler knows about its call: the deadline, and whether it should stop.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use shmlink::rpc::{Context, Stop};
///
/// let ctx = Context::detached(Some(Duration::from_millis(10)));
/// assert!(ctx.check().is_ok());
/// // Waits out the 10 ms deadline, not the full second.
/// assert_eq!(ctx.sleep(Duration::from_secs(1)), Err(Stop::DeadlineExceeded));
/// assert!(ctx.is_cancelled());
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    deadline: Option<Instant>,
    id: u64,
    ctl: Arc<CallCtl>,
}

impl Context {
    pub(crate) fn new(id: u64, deadline: Option<Instant>, ctl: Arc<CallCtl>) -> Self {
        Self { deadline, id, ctl }
    }

    /// A context that belongs to no call (for calling a handler directly, e.g. in
    /// tests), with an optional time budget.
    pub fn detached(budget: Option<Duration>) -> Self {
        Self {
            deadline: budget.and_then(|b| Instant::now().checked_add(b)),
            id: 0,
            ctl: CallCtl::new(0),
        }
    }

    /// The call's deadline on this host's clock (`None`: the caller set none).
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The call id (unique per connection while in flight).
    pub fn call_id(&self) -> u64 {
        self.id
    }

    /// `Err` with the reason once the handler should stop: the caller cancelled, the
    /// deadline passed, or the server's shutdown grace ended.
    ///
    /// # Errors
    ///
    /// The [`Stop`] reason.
    pub fn check(&self) -> Result<(), Stop> {
        match self.ctl.stop_reason(self.deadline) {
            Some(stop) => Err(stop),
            None => Ok(()),
        }
    }

    /// `true` once [`check`](Self::check) fails.
    pub fn is_cancelled(&self) -> bool {
        self.check().is_err()
    }

    /// Sleeps for `d`, waking early (with the reason) when the call should stop: a
    /// handler that waits on something slow should wait through this.
    ///
    /// # Errors
    ///
    /// The [`Stop`] reason if the call should stop before `d` passed.
    pub fn sleep(&self, d: Duration) -> Result<(), Stop> {
        let until = Instant::now().checked_add(d);
        self.ctl.sleep_until(self.deadline, until)
    }

    pub(crate) fn ctl(&self) -> &Arc<CallCtl> {
        &self.ctl
    }
}

/// A service's server side, as [`service!`](crate::service) implements it for its
/// server adapter: not usually implemented by hand.
pub trait Service: Send + Sync + 'static {
    /// The service id clients must present (a hash of its name and methods).
    fn service_id(&self) -> u64;
    /// The service's name.
    fn name(&self) -> &'static str;
    /// Runs method `method` on `request`, answering through `reply`.
    fn dispatch(&self, method: u64, ctx: &Context, request: &[u8], reply: &mut Responder<'_>);
    /// Whether `method` is a unary method of this service (what
    /// [`Server::inline_unary`] runs on the reader). `false` unless known: the
    /// default, for services written by hand.
    fn is_unary(&self, method: u64) -> bool {
        let _ = method;
        false
    }
}

/// Support for the code [`service!`](crate::service) generates; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use super::wire::{hash, method_id};

    /// Whether no two of `ids` are equal (checked at compile time by the macro).
    pub const fn all_distinct(ids: &[u64]) -> bool {
        let mut i = 0;
        while i < ids.len() {
            let mut j = i + 1;
            while j < ids.len() {
                if ids[i] == ids[j] {
                    return false;
                }
                j += 1;
            }
            i += 1;
        }
        true
    }

    /// Decodes a request or response.
    pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Option<T> {
        postcard::from_bytes(bytes).ok()
    }
}

/// Declares an RPC service: the trait its server implements, a client stub and a
/// server adapter.
///
/// ```text
/// shmlink::service! {
///     /// docs
///     pub trait NAME {
///         client CLIENT;       // the client stub type to generate
///         server SERVER;       // the server adapter type to generate: SERVER(impl NAME)
///         error ERROR;         // the service's error type (serde); optional
///         fn method(arg: Request) -> Response;        // a call
///         stream fn method2(arg: Request) -> Item;    // a server-streaming call
///         fn method3(a: A, b: B) -> Response;         // zero or several arguments
///     }
/// }
/// ```
///
/// Without an `error` line the error type is [`NoError`], which has no values.
/// Arguments travel as one value: itself for one argument, a tuple for several, `()`
/// for none.
///
/// The trait gets `fn method(&self, ctx: &Context, arg: Request) -> Result<Response,
/// ERROR>` and `fn method2(&self, ctx: &Context, arg: Request, sink: &mut Sink<'_,
/// Item>) -> Result<(), ERROR>`. The client gets `fn method(&self, arg: Request) ->
/// Call<Response, ERROR>` (send now, [`Call::wait`] for the answer; dropping it
/// cancels) and `fn method2(&self, arg: Request) -> CallStream<Item, ERROR>` (an
/// iterator). Methods are identified on the wire by a hash of the service name, method
/// name and types, so a client and server that disagree on a method's types get
/// [`RpcError::UnknownMethod`] instead of garbage. See the [module docs](crate::rpc)
/// for a full example.
///
/// Everything generated, for a service `NAME` with stub `CLIENT` and adapter `SERVER`:
///
/// | item | what |
/// |---|---|
/// | `trait NAME` | the methods the server implements, each with a [`Context`] |
/// | `CLIENT::SERVICE_ID` | the service's id, checked in the hello |
/// | `CLIENT::connect(url)` | connects with [`ClientOptions::default`] |
/// | `CLIENT::connect_with(url, &opts)` | connects with options (timeouts, transport) |
/// | `CLIENT::connect_timeout(url, timeout)` | waits up to `timeout` for a server to listen at `url` ([`Client::connect_timeout`]) |
/// | `CLIENT::connect_timeout_with(url, &opts, timeout)` | the same, with options |
/// | `CLIENT::from_connection(conn, &opts)` | a client over a [`Connection`](crate::transport::Connection) already made |
/// | `client.with_timeout(t)`, `client.with_deadline(d)` | a handle on the same connection whose calls get that budget |
/// | `client.raw()` | the untyped [`Client`] |
/// | `client.method(arg)` | a call: [`Call`], or [`CallStream`] for a `stream fn` |
/// | `SERVER(impl)` | the [`Service`] to hand to a [`Server`] |
#[macro_export]
macro_rules! service {
    (
        $(#[$attr:meta])*
        $vis:vis trait $svc:ident {
            client $client:ident;
            server $server:ident;
            error $err:ty;
            $($body:tt)*
        }
    ) => {
        $crate::service!(@munch
            [$(#[$attr])*] [$vis] [$svc] [$client] [$server] [$err]
            [] []
            $($body)*
        );
    };
    // No `error` line: the service's handlers never fail with an error of their own.
    (
        $(#[$attr:meta])*
        $vis:vis trait $svc:ident {
            client $client:ident;
            server $server:ident;
            $($body:tt)*
        }
    ) => {
        $crate::service!(@munch
            [$(#[$attr])*] [$vis] [$svc] [$client] [$server] [$crate::rpc::NoError]
            [] []
            $($body)*
        );
    };
    // A call.
    (@munch $a:tt $v:tt $s:tt $c:tt $sv:tt $e:tt [$($calls:tt)*] $streams:tt
        $(#[$m:meta])* fn $name:ident($($arg:ident : $req:ty),* $(,)?) -> $resp:ty;
        $($rest:tt)*
    ) => {
        $crate::service!(@munch $a $v $s $c $sv $e
            [$($calls)* { [$(#[$m])*] $name [$($arg),*] [$($req),*] [$resp] }] $streams
            $($rest)*
        );
    };
    // A server-streaming call.
    (@munch $a:tt $v:tt $s:tt $c:tt $sv:tt $e:tt $calls:tt [$($streams:tt)*]
        $(#[$m:meta])* stream fn $name:ident($($arg:ident : $req:ty),* $(,)?) -> $item:ty;
        $($rest:tt)*
    ) => {
        $crate::service!(@munch $a $v $s $c $sv $e
            $calls [$($streams)* { [$(#[$m])*] $name [$($arg),*] [$($req),*] [$item] }]
            $($rest)*
        );
    };
    // Everything collected: generate.
    (@munch [$(#[$attr:meta])*] [$vis:vis] [$svc:ident] [$client:ident] [$server:ident] [$err:ty]
        [$({ [$(#[$cm:meta])*] $cname:ident [$($carg:ident),*] [$($creq:ty),*] [$cresp:ty] })*]
        [$({ [$(#[$sm:meta])*] $sname:ident [$($sarg:ident),*] [$($sreq:ty),*] [$sitem:ty] })*]
    ) => {
        $(#[$attr])*
        $vis trait $svc: ::core::marker::Send + ::core::marker::Sync + 'static {
            $(
                $(#[$cm])*
                fn $cname(&self, ctx: &$crate::rpc::Context $(, $carg: $creq)*)
                    -> ::core::result::Result<$cresp, $err>;
            )*
            $(
                $(#[$sm])*
                fn $sname(&self, ctx: &$crate::rpc::Context, $($sarg: $sreq,)*
                    sink: &mut $crate::rpc::Sink<'_, $sitem>)
                    -> ::core::result::Result<(), $err>;
            )*
        }

        #[doc = concat!("Client stub of [`", stringify!($svc), "`]: cheap to clone, usable from many threads.")]
        #[derive(Debug, Clone)]
        $vis struct $client {
            inner: $crate::rpc::Client,
        }

        #[allow(dead_code)]
        impl $client {
            /// The service id: a hash of the service's name and its methods' names
            /// and types.
            pub const SERVICE_ID: u64 = $crate::rpc::__private::hash(&[
                stringify!($svc), stringify!($err),
                $(stringify!($cname), stringify!($($creq),*), stringify!($cresp),)*
                $("stream", stringify!($sname), stringify!($($sreq),*), stringify!($sitem),)*
            ]);

            /// Connects to a server at `url` (`shm://NAME`, `unix:///PATH`,
            /// `tcp://HOST:PORT`) with default options.
            ///
            /// # Errors
            ///
            /// [`ConnectError`]($crate::rpc::ConnectError).
            pub fn connect(url: &str) -> ::core::result::Result<Self, $crate::rpc::ConnectError> {
                Self::connect_with(url, &$crate::rpc::ClientOptions::default())
            }

            /// Connects with `opts`.
            ///
            /// # Errors
            ///
            /// [`ConnectError`]($crate::rpc::ConnectError).
            pub fn connect_with(url: &str, opts: &$crate::rpc::ClientOptions)
                -> ::core::result::Result<Self, $crate::rpc::ConnectError>
            {
                Ok(Self { inner: $crate::rpc::Client::connect(url, Self::SERVICE_ID, opts)? })
            }

            /// Connects to a server at `url`, waiting up to `timeout` for one to listen
            /// there (see [`Client::connect_timeout`]($crate::rpc::Client::connect_timeout)).
            ///
            /// # Errors
            ///
            /// [`ConnectError::Timeout`]($crate::rpc::ConnectError::Timeout) if none did.
            pub fn connect_timeout(url: &str, timeout: ::std::time::Duration)
                -> ::core::result::Result<Self, $crate::rpc::ConnectError>
            {
                Self::connect_timeout_with(url, &$crate::rpc::ClientOptions::default(), timeout)
            }

            /// [`connect_timeout`](Self::connect_timeout) with `opts` (e.g.
            /// [`ClientOptions::reconnect`]($crate::rpc::ClientOptions::reconnect)).
            ///
            /// # Errors
            ///
            /// As `connect_timeout`.
            pub fn connect_timeout_with(
                url: &str,
                opts: &$crate::rpc::ClientOptions,
                timeout: ::std::time::Duration,
            ) -> ::core::result::Result<Self, $crate::rpc::ConnectError> {
                Ok(Self {
                    inner: $crate::rpc::Client::connect_timeout(url, Self::SERVICE_ID, opts, timeout)?,
                })
            }

            /// A client over an established transport connection.
            ///
            /// # Errors
            ///
            /// [`ConnectError`]($crate::rpc::ConnectError).
            pub fn from_connection(conn: $crate::transport::Connection, opts: &$crate::rpc::ClientOptions)
                -> ::core::result::Result<Self, $crate::rpc::ConnectError>
            {
                Ok(Self { inner: $crate::rpc::Client::new(conn, Self::SERVICE_ID, opts)? })
            }

            /// A handle whose calls get `timeout` as their time budget.
            pub fn with_timeout(&self, timeout: ::std::time::Duration) -> Self {
                Self { inner: self.inner.with_timeout(timeout) }
            }

            /// A handle whose calls end at `deadline`.
            pub fn with_deadline(&self, deadline: ::std::time::Instant) -> Self {
                Self { inner: self.inner.with_deadline(deadline) }
            }

            /// The generic client underneath.
            pub fn raw(&self) -> &$crate::rpc::Client {
                &self.inner
            }

            $(
                $(#[$cm])*
                pub fn $cname(&self $(, $carg: $creq)*) -> $crate::rpc::Call<$cresp, $err> {
                    const ID: u64 = $crate::rpc::__private::method_id(&[
                        stringify!($svc), stringify!($cname), stringify!($($creq),*), stringify!($cresp)]);
                    // One argument goes on the wire as itself (postcard encodes a
                    // 1-tuple as its field), several as a tuple, none as `()`.
                    self.inner.call(ID, &($($carg,)*))
                }
            )*
            $(
                $(#[$sm])*
                pub fn $sname(&self $(, $sarg: $sreq)*) -> $crate::rpc::CallStream<$sitem, $err> {
                    const ID: u64 = $crate::rpc::__private::method_id(&[
                        stringify!($svc), "stream", stringify!($sname), stringify!($($sreq),*), stringify!($sitem)]);
                    self.inner.call_stream(ID, &($($sarg,)*))
                }
            )*
        }

        #[doc = concat!("Server adapter of [`", stringify!($svc), "`]: `", stringify!($server), "(impl)` is a [`Service`]($crate::rpc::Service).")]
        #[derive(Debug)]
        $vis struct $server<S>(pub S);

        // Method ids are 32-bit hashes: refuse to build a service where two collide.
        const _: () = assert!(
            $crate::rpc::__private::all_distinct(&[
                $($crate::rpc::__private::method_id(&[
                    stringify!($svc), stringify!($cname), stringify!($($creq),*), stringify!($cresp)]),)*
                $($crate::rpc::__private::method_id(&[
                    stringify!($svc), "stream", stringify!($sname), stringify!($($sreq),*), stringify!($sitem)]),)*
            ]),
            "two methods of this service hash to the same id: rename one"
        );

        impl<S: $svc> $crate::rpc::Service for $server<S> {
            fn service_id(&self) -> u64 {
                $client::SERVICE_ID
            }

            fn name(&self) -> &'static str {
                stringify!($svc)
            }

            #[allow(unused_variables)]
            fn dispatch(
                &self,
                method: u64,
                ctx: &$crate::rpc::Context,
                request: &[u8],
                reply: &mut $crate::rpc::Responder<'_>,
            ) {
                $(
                    if method == const { $crate::rpc::__private::method_id(&[
                        stringify!($svc), stringify!($cname), stringify!($($creq),*), stringify!($cresp)]) }
                    {
                        match $crate::rpc::__private::decode::<($($creq,)*)>(request) {
                            Some(($($carg,)*)) => {
                                let result = self.0.$cname(ctx $(, $carg)*);
                                reply.finish(result);
                            }
                            None => reply.bad_request(),
                        }
                        return;
                    }
                )*
                $(
                    if method == const { $crate::rpc::__private::method_id(&[
                        stringify!($svc), "stream", stringify!($sname), stringify!($($sreq),*), stringify!($sitem)]) }
                    {
                        match $crate::rpc::__private::decode::<($($sreq,)*)>(request) {
                            Some(($($sarg,)*)) => {
                                let result = {
                                    let mut sink = reply.sink::<$sitem>();
                                    self.0.$sname(ctx, $($sarg,)* &mut sink)
                                };
                                reply.finish_stream(result);
                            }
                            None => reply.bad_request(),
                        }
                        return;
                    }
                )*
                reply.unknown_method();
            }

            fn is_unary(&self, method: u64) -> bool {
                false $(|| method == const { $crate::rpc::__private::method_id(&[
                    stringify!($svc), stringify!($cname), stringify!($($creq),*), stringify!($cresp)]) })*
            }
        }
    };
}
