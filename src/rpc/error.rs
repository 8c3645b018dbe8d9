//! RPC errors.

use core::fmt;

use crate::transport;

/// A transport failure seen by the RPC layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportFailure {
    /// Sending the request (or a cancel) failed.
    Send(transport::TransportSendError),
    /// Receiving failed for a reason other than the server going away.
    Recv(transport::TransportRecvError),
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportFailure::Send(e) => write!(f, "send: {e}"),
            TransportFailure::Recv(e) => write!(f, "receive: {e}"),
        }
    }
}

/// How a call failed.
///
/// `E` is the service's own error type: [`RpcError::Service`] is the only variant the
/// service's code produces; every other one comes from the RPC machinery.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::RpcError;
///
/// let e: RpcError<String> = RpcError::DeadlineExceeded;
/// assert_eq!(e.to_string(), "deadline exceeded");
/// assert!(e.service_error().is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RpcError<E> {
    /// The service returned its error.
    Service(E),
    /// The call's deadline passed before its answer came.
    DeadlineExceeded,
    /// The server closed the connection or died (before answering).
    ServerGone,
    /// The server is shutting down and refused the call (it never ran).
    Unavailable,
    /// The server has no such method, or one with other types.
    UnknownMethod,
    /// The server could not decode the request (the two sides disagree on its type).
    BadRequest,
    /// The handler panicked on the server.
    Internal,
    /// The request or the response is larger than the connection's maximum frame.
    TooLarge,
    /// The transport failed.
    Transport(TransportFailure),
    /// The server sent something a correct server does not (an undecodable frame or
    /// response); the connection is closed.
    Protocol(&'static str),
}

impl<E> RpcError<E> {
    /// The service's error, if that is what this is.
    pub fn service_error(&self) -> Option<&E> {
        match self {
            RpcError::Service(e) => Some(e),
            _ => None,
        }
    }

    /// The same failure for another service error type (for errors that carry none).
    pub(crate) fn cast<F>(&self) -> RpcError<F> {
        match self {
            RpcError::Service(_) => RpcError::Protocol("service error on a machinery path"),
            RpcError::DeadlineExceeded => RpcError::DeadlineExceeded,
            RpcError::ServerGone => RpcError::ServerGone,
            RpcError::Unavailable => RpcError::Unavailable,
            RpcError::UnknownMethod => RpcError::UnknownMethod,
            RpcError::BadRequest => RpcError::BadRequest,
            RpcError::Internal => RpcError::Internal,
            RpcError::TooLarge => RpcError::TooLarge,
            RpcError::Transport(t) => RpcError::Transport(t.clone()),
            RpcError::Protocol(p) => RpcError::Protocol(p),
        }
    }
}

impl<E: fmt::Display> fmt::Display for RpcError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RpcError::Service(e) => write!(f, "service error: {e}"),
            RpcError::DeadlineExceeded => f.write_str("deadline exceeded"),
            RpcError::ServerGone => f.write_str("server gone"),
            RpcError::Unavailable => f.write_str("server unavailable (shutting down)"),
            RpcError::UnknownMethod => f.write_str("unknown method"),
            RpcError::BadRequest => f.write_str("server could not decode the request"),
            RpcError::Internal => f.write_str("handler panicked on the server"),
            RpcError::TooLarge => f.write_str("message larger than the maximum frame"),
            RpcError::Transport(t) => write!(f, "transport: {t}"),
            RpcError::Protocol(p) => write!(f, "protocol violation: {p}"),
        }
    }
}

impl<E: fmt::Debug + fmt::Display> std::error::Error for RpcError<E> {}

/// Errors of connecting an RPC client.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::{Client, ClientOptions, ConnectError};
///
/// let err = Client::connect("shm://nobody-serves-this", 1, &ClientOptions::default()).unwrap_err();
/// assert!(matches!(err, ConnectError::Transport(_)));
/// assert_eq!(err.to_string(), "cannot connect to shm://nobody-serves-this: nothing listens there");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The transport connection failed (its error names the URL).
    Transport(transport::ConnectError),
    /// The server runs another service (or another version of it).
    WrongService {
        /// The server's URL (empty for a connection made by hand: [`Client::new`]).
        ///
        /// [`Client::new`]: super::Client::new
        url: String,
        /// The id the client asked for.
        ours: u64,
        /// The id the server runs.
        theirs: u64,
    },
    /// The server did not answer the hello in time (or, for
    /// [`connect_timeout`](super::Client::connect_timeout), nothing listened in time).
    Timeout {
        /// The server's URL (empty for a connection made by hand).
        url: String,
    },
    /// The server went away during the hello.
    ServerGone {
        /// The server's URL (empty for a connection made by hand).
        url: String,
    },
    /// The server answered the hello with something else.
    Protocol {
        /// The server's URL (empty for a connection made by hand).
        url: String,
        /// What was wrong.
        what: &'static str,
    },
}

impl ConnectError {
    /// [`Timeout`](Self::Timeout), its URL filled in by [`at`](Self::at).
    pub(crate) fn timeout() -> Self {
        Self::Timeout { url: String::new() }
    }

    /// [`ServerGone`](Self::ServerGone), its URL filled in by [`at`](Self::at).
    pub(crate) fn server_gone() -> Self {
        Self::ServerGone { url: String::new() }
    }

    /// [`Protocol`](Self::Protocol), its URL filled in by [`at`](Self::at).
    pub(crate) fn protocol(what: &'static str) -> Self {
        Self::Protocol {
            url: String::new(),
            what,
        }
    }

    /// The error of connecting to `to`: fills in the URL where it is not yet set.
    pub(crate) fn at(mut self, to: &str) -> Self {
        if let Self::WrongService { url, .. }
        | Self::Timeout { url }
        | Self::ServerGone { url }
        | Self::Protocol { url, .. } = &mut self
            && url.is_empty()
        {
            to.clone_into(url);
        }
        self
    }
}

/// "cannot connect to URL: " (or "cannot connect: " without one).
fn connect_prefix(f: &mut fmt::Formatter<'_>, url: &str) -> fmt::Result {
    if url.is_empty() {
        f.write_str("cannot connect: ")
    } else {
        write!(f, "cannot connect to {url}: ")
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Transport(e) => write!(f, "{e}"),
            ConnectError::WrongService { url, ours, theirs } => {
                connect_prefix(f, url)?;
                write!(
                    f,
                    "the server runs service {theirs:#018x}, not {ours:#018x} \
                     (another service or version)"
                )
            }
            ConnectError::Timeout { url } => {
                connect_prefix(f, url)?;
                f.write_str("no answer to the hello in time")
            }
            ConnectError::ServerGone { url } => {
                connect_prefix(f, url)?;
                f.write_str("the server left during the hello")
            }
            ConnectError::Protocol { url, what } => {
                connect_prefix(f, url)?;
                write!(f, "protocol violation in the hello: {what}")
            }
        }
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConnectError::Transport(e) => Some(e),
            _ => None,
        }
    }
}

impl From<transport::ConnectError> for ConnectError {
    fn from(e: transport::ConnectError) -> Self {
        ConnectError::Transport(e)
    }
}

/// The error type of a service declared without an `error` line in
/// [`service!`](crate::service): its handlers never fail with an error of their own
/// (calls still fail with the other [`RpcError`]s). It has no values.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::{Context, NoError, Server};
///
/// shmlink::service! {
///     pub trait Clock {
///         client ClockClient;
///         server ClockServer;
///         fn now() -> u64;
///         fn add(a: u64, b: u64) -> u64;
///     }
/// }
/// struct Fixed;
/// impl Clock for Fixed {
///     fn now(&self, _: &Context) -> Result<u64, NoError> {
///         Ok(42)
///     }
///     fn add(&self, _: &Context, a: u64, b: u64) -> Result<u64, NoError> {
///         Ok(a + b)
///     }
/// }
/// let server = Server::new(ClockServer(Fixed)).serve("tcp://127.0.0.1:0")?;
/// let clock = ClockClient::connect(server.url().unwrap())?;
/// assert_eq!(clock.now().wait()?, 42);
/// assert_eq!(clock.add(2, 3).wait()?, 5);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum NoError {}

impl fmt::Display for NoError {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {}
    }
}

impl std::error::Error for NoError {}
