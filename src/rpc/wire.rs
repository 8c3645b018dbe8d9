//! The RPC frame format: a 32-byte header and a payload, inside one transport frame.
//!
//! | offset | size | field | meaning |
//! |-------:|-----:|-------|---------|
//! | 0 | 1 | `kind` | [`Kind`] |
//! | 1 | 1 | `code` | reply status ([`Code`]) for replies, else 0 |
//! | 2 | 6 | reserved | zero |
//! | 8 | 8 | `id` | call id, chosen by the client, unique among its calls in flight |
//! | 16 | 8 | `method` | method id (requests), service id (hellos), else 0 |
//! | 24 | 8 | `arg` | requests: the call's time budget in ns (`u64::MAX`: none); credits: how many; else 0 |
//! | 32 | … | payload | postcard bytes of the request, response, stream item or service error |
//!
//! All integers little-endian. The decoder checks the length, the kind, the code and
//! that reserved bytes are zero, and never panics on any input.

use core::fmt;

/// Length of the header.
pub const HEADER_LEN: usize = 32;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Client → server, first frame: `method` holds the service id.
    Hello = 1,
    /// Server → client: answer to the hello (`code` 0: accepted; `method`: the
    /// server's service id).
    HelloReply = 2,
    /// Client → server: a call.
    Request = 3,
    /// Server → client: the end of a call (`code` says how it ended).
    Reply = 4,
    /// Server → client: one item of a streaming call.
    Item = 5,
    /// Client → server: the caller gave up on call `id`.
    Cancel = 6,
    /// Client → server: the caller consumed `arg` more items of stream `id`.
    Credit = 7,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Hello,
            2 => Kind::HelloReply,
            3 => Kind::Request,
            4 => Kind::Reply,
            5 => Kind::Item,
            6 => Kind::Cancel,
            7 => Kind::Credit,
            _ => return None,
        })
    }
}

/// How a call ended ([`Kind::Reply`]) or whether a hello was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Code {
    /// Success; the payload is the response (empty for a stream's end).
    Ok = 0,
    /// The service returned its error; the payload is the error.
    ServiceError = 1,
    /// The deadline passed before the server finished.
    DeadlineExceeded = 2,
    /// The server has no such method (or it has other types).
    UnknownMethod = 3,
    /// The server could not decode the request.
    BadRequest = 4,
    /// The server is shutting down and takes no new calls.
    Unavailable = 5,
    /// The handler panicked.
    Internal = 6,
    /// The response did not fit in a frame.
    ResponseTooLarge = 7,
    /// Hello: the server runs another service.
    WrongService = 8,
}

impl Code {
    fn from_u8(b: u8) -> Option<Code> {
        Some(match b {
            0 => Code::Ok,
            1 => Code::ServiceError,
            2 => Code::DeadlineExceeded,
            3 => Code::UnknownMethod,
            4 => Code::BadRequest,
            5 => Code::Unavailable,
            6 => Code::Internal,
            7 => Code::ResponseTooLarge,
            8 => Code::WrongService,
            _ => return None,
        })
    }
}

/// A decoded frame, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    /// What it is.
    pub kind: Kind,
    /// Reply status (0 for other kinds).
    pub code: Code,
    /// Call id.
    pub id: u64,
    /// Method or service id.
    pub method: u64,
    /// Budget in ns, or credits.
    pub arg: u64,
    /// The rest.
    pub payload: &'a [u8],
}

/// Why a frame was refused.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::wire::{decode, DecodeError};
///
/// assert_eq!(decode(&[1, 2, 3]), Err(DecodeError::Short(3)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Shorter than the header.
    Short(usize),
    /// Unknown kind byte.
    Kind(u8),
    /// Unknown code byte, or a code on a kind that has none.
    Code(u8),
    /// Reserved bytes not zero.
    Reserved,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short(n) => write!(f, "frame of {n} bytes is shorter than the header"),
            DecodeError::Kind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::Code(c) => write!(f, "unknown or misplaced status code {c}"),
            DecodeError::Reserved => f.write_str("reserved header bytes are not zero"),
        }
    }
}

impl std::error::Error for DecodeError {}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Decodes one frame.
///
/// # Errors
///
/// [`DecodeError`] for anything a correct peer does not send.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::wire::{decode, encode_header, Code, Kind};
///
/// let mut buf = Vec::new();
/// encode_header(&mut buf, Kind::Request, Code::Ok, 7, 42, 1_000_000);
/// buf.extend_from_slice(b"args");
/// let f = decode(&buf)?;
/// assert_eq!((f.kind, f.id, f.method, f.arg, f.payload), (Kind::Request, 7, 42, 1_000_000, &b"args"[..]));
/// # Ok::<(), shmlink::rpc::wire::DecodeError>(())
/// ```
pub fn decode(b: &[u8]) -> Result<Frame<'_>, DecodeError> {
    if b.len() < HEADER_LEN {
        return Err(DecodeError::Short(b.len()));
    }
    let kind = Kind::from_u8(b[0]).ok_or(DecodeError::Kind(b[0]))?;
    let code = Code::from_u8(b[1]).ok_or(DecodeError::Code(b[1]))?;
    if !matches!(kind, Kind::Reply | Kind::HelloReply) && code != Code::Ok {
        return Err(DecodeError::Code(b[1]));
    }
    if b[2..8].iter().any(|&x| x != 0) {
        return Err(DecodeError::Reserved);
    }
    Ok(Frame {
        kind,
        code,
        id: u64_at(b, 8),
        method: u64_at(b, 16),
        arg: u64_at(b, 24),
        payload: &b[HEADER_LEN..],
    })
}

/// Clears `buf` and writes a header into it (the payload is appended after).
pub fn encode_header(buf: &mut Vec<u8>, kind: Kind, code: Code, id: u64, method: u64, arg: u64) {
    buf.clear();
    buf.push(kind as u8);
    buf.push(code as u8);
    buf.extend_from_slice(&[0; 6]);
    buf.extend_from_slice(&id.to_le_bytes());
    buf.extend_from_slice(&method.to_le_bytes());
    buf.extend_from_slice(&arg.to_le_bytes());
}

/// FNV-1a over `parts`, each followed by a separator byte: method and service ids.
///
/// # Examples
///
/// ```
/// use shmlink::rpc::wire::hash;
///
/// assert_ne!(hash(&["Kv", "get"]), hash(&["Kv", "put"]));
/// assert_ne!(hash(&["ab", "c"]), hash(&["a", "bc"]));
/// ```
pub const fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < parts.len() {
        let bytes = parts[i].as_bytes();
        let mut j = 0;
        while j < bytes.len() {
            h ^= bytes[j] as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
            j += 1;
        }
        h ^= 0xff;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}
