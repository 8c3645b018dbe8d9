//! The RPC frame format: a compact header and a payload, inside one transport frame.
//!
//! Small calls must stay small on the wire (a shared-memory round trip costs about one
//! cache-line transfer per 64 bytes each way), so the header is packed:
//!
//! | field | encoding | present in |
//! |-------|----------|------------|
//! | `kind` and `code` | one byte: kind in the low 4 bits ([`Kind`]), reply status in the high 4 ([`Code`], replies and hello replies only, else 0) | all |
//! | `id` | LEB128 varint | all (0 in hellos) |
//! | `method` | service id, u64 LE | hello, hello reply |
//! | `method` | method id, u32 LE | request |
//! | `arg` | budget in ns, varint (`u64::MAX`: none) | request |
//! | `arg` | credits, varint | credit |
//! | payload | postcard bytes of the request, response, stream item or service error | the rest |
//!
//! A request echoing a `u64` is thus about 14 bytes and its reply 4. The decoder
//! checks every byte it reads (kind, code, canonical varints, lengths) and never
//! panics on any input; [`encode_header`] and [`decode`] round-trip exactly.

use core::fmt;

/// Longest header (a hello: kind, id, service id; or a request: kind, id, method,
/// budget).
pub const MAX_HEADER_LEN: usize = 1 + 10 + 4 + 10;

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
    /// Reply status ([`Code::Ok`] for kinds that carry none).
    pub code: Code,
    /// Call id.
    pub id: u64,
    /// Service id (hellos) or method id (requests, 32 bits); else 0.
    pub method: u64,
    /// Budget in ns (requests) or credits (credit frames); else 0.
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
/// assert_eq!(decode(&[]), Err(DecodeError::Truncated));
/// assert_eq!(decode(&[0x0f]), Err(DecodeError::Kind(0x0f)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The frame ends inside the header.
    Truncated,
    /// Unknown kind.
    Kind(u8),
    /// Unknown code, or a code on a kind that has none.
    Code(u8),
    /// A varint that is longer than needed or overflows 64 bits.
    Varint,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("frame ends inside its header"),
            DecodeError::Kind(k) => write!(f, "unknown frame kind {k}"),
            DecodeError::Code(c) => write!(f, "unknown or misplaced status code {c}"),
            DecodeError::Varint => f.write_str("malformed varint"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// A cursor over the header bytes.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let v = *self.b.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(v)
    }

    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.at.checked_add(N).ok_or(DecodeError::Truncated)?;
        let s = self.b.get(self.at..end).ok_or(DecodeError::Truncated)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        self.at = end;
        Ok(out)
    }

    /// A canonical LEB128 `u64`: at most 10 bytes, no overflow, no redundant
    /// trailing zero group.
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = self.byte()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && part > 1 {
                return Err(DecodeError::Varint);
            }
            v |= part << (7 * i);
            if b & 0x80 == 0 {
                if i > 0 && b == 0 {
                    return Err(DecodeError::Varint);
                }
                return Ok(v);
            }
        }
        Err(DecodeError::Varint)
    }

    fn rest(&self) -> &'a [u8] {
        &self.b[self.at..]
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
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
/// assert_eq!(buf.len(), 1 + 1 + 4 + 3 + 4); // kind, id, method, budget, payload
/// # Ok::<(), shmlink::rpc::wire::DecodeError>(())
/// ```
pub fn decode(b: &[u8]) -> Result<Frame<'_>, DecodeError> {
    let mut r = Reader { b, at: 0 };
    let first = r.byte()?;
    let kind = Kind::from_u8(first & 0x0f).ok_or(DecodeError::Kind(first & 0x0f))?;
    let code = Code::from_u8(first >> 4).ok_or(DecodeError::Code(first >> 4))?;
    if !matches!(kind, Kind::Reply | Kind::HelloReply) && code != Code::Ok {
        return Err(DecodeError::Code(first >> 4));
    }
    let id = r.varint()?;
    let (method, arg) = match kind {
        Kind::Hello | Kind::HelloReply => (u64::from_le_bytes(r.fixed::<8>()?), 0),
        Kind::Request => {
            let m = u32::from_le_bytes(r.fixed::<4>()?);
            (u64::from(m), r.varint()?)
        }
        Kind::Credit => (0, r.varint()?),
        Kind::Reply | Kind::Item | Kind::Cancel => (0, 0),
    };
    Ok(Frame {
        kind,
        code,
        id,
        method,
        arg,
        payload: r.rest(),
    })
}

/// Clears `buf` and writes a header into it (the payload is appended after).
/// Fields the kind does not carry are ignored; a request's `method` is truncated to
/// its 32 wire bits (method ids are 32-bit, see [`method_id`]).
pub fn encode_header(buf: &mut Vec<u8>, kind: Kind, code: Code, id: u64, method: u64, arg: u64) {
    buf.clear();
    let code = if matches!(kind, Kind::Reply | Kind::HelloReply) {
        code as u8
    } else {
        0
    };
    buf.push(kind as u8 | code << 4);
    put_varint(buf, id);
    match kind {
        Kind::Hello | Kind::HelloReply => buf.extend_from_slice(&method.to_le_bytes()),
        Kind::Request => {
            buf.extend_from_slice(&(method as u32).to_le_bytes());
            put_varint(buf, arg);
        }
        Kind::Credit => put_varint(buf, arg),
        Kind::Reply | Kind::Item | Kind::Cancel => {}
    }
}

/// The 32-bit wire id of a method: [`hash`] of its parts, truncated. Ids only need to
/// differ within one service (whose own id in the hello is 64-bit), and
/// [`service!`](crate::service) checks that at compile time.
pub const fn method_id(parts: &[&str]) -> u64 {
    hash(parts) & 0xffff_ffff
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_round_trips() {
        let kinds = [
            Kind::Hello,
            Kind::HelloReply,
            Kind::Request,
            Kind::Reply,
            Kind::Item,
            Kind::Cancel,
            Kind::Credit,
        ];
        let mut buf = Vec::new();
        for kind in kinds {
            for id in [0, 1, 127, 128, u64::MAX] {
                let code = if kind == Kind::Reply {
                    Code::Unavailable
                } else {
                    Code::Ok
                };
                encode_header(&mut buf, kind, code, id, 0xdead_beef, 300);
                buf.extend_from_slice(b"xy");
                let f = decode(&buf).unwrap();
                assert_eq!(
                    (f.kind, f.code, f.id, f.payload),
                    (kind, code, id, &b"xy"[..])
                );
                let mut again = Vec::new();
                encode_header(&mut again, f.kind, f.code, f.id, f.method, f.arg);
                again.extend_from_slice(f.payload);
                assert_eq!(again, buf, "{kind:?} re-encodes to the same bytes");
            }
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        assert_eq!(decode(&[]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0]), Err(DecodeError::Kind(0)));
        // A status code on a request.
        assert_eq!(decode(&[0x13, 0]), Err(DecodeError::Code(1)));
        // An unknown code on a reply.
        assert_eq!(decode(&[0xf4, 0]), Err(DecodeError::Code(15)));
        // Overlong varint (0 written in two bytes), and one past 64 bits.
        assert_eq!(decode(&[4, 0x80, 0x00]), Err(DecodeError::Varint));
        let mut long = vec![4];
        long.extend_from_slice(&[0xff; 9]);
        long.push(0x02);
        assert_eq!(decode(&long), Err(DecodeError::Varint));
        // A request cut inside its method id.
        assert_eq!(decode(&[3, 1, 0xaa, 0xbb]), Err(DecodeError::Truncated));
    }
}
