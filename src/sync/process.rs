//! Process tokens: a process identity packed in one `u64`, for role words in shared
//! memory (who holds the producer role, ...), with a liveness check.
//!
//! A token holds the pid in its low 32 bits and the low 32 bits of the process start
//! time (clock ticks after boot) in the high 32, so a recycled pid does not pass for
//! the process that died. `0` means "nobody".

/// The calling process's token (never 0).
///
/// # Examples
///
/// ```
/// use shmlink::segment::process::{current_token, token_alive, token_pid};
///
/// let me = current_token();
/// assert_ne!(me, 0);
/// assert_eq!(token_pid(me), std::process::id());
/// assert!(token_alive(me));
/// ```
#[cfg(not(shmlink_loom))]
pub fn current_token() -> u64 {
    let pid = std::process::id();
    token_of(pid, start_ticks_of(pid).unwrap_or(0))
}

/// Packs a pid and a start time into a token.
///
/// # Examples
///
/// ```
/// use shmlink::segment::process::{token_of, token_pid};
///
/// let token = token_of(4242, 123_456);
/// assert_eq!(token_pid(token), 4242);
/// assert_ne!(token_of(4242, 999), token); // same pid, another process
/// assert_ne!(token_of(0, 0), 0); // never mistaken for "nobody"
/// ```
pub const fn token_of(pid: u32, start_ticks: u64) -> u64 {
    ((start_ticks & 0xffff_ffff) << 32) | pid as u64 | if pid == 0 { 1 << 63 } else { 0 }
}

/// The pid in a token.
///
/// # Examples
///
/// ```
/// use shmlink::segment::process::{current_token, token_pid};
///
/// assert_eq!(token_pid(current_token()), std::process::id());
/// ```
pub const fn token_pid(token: u64) -> u32 {
    token as u32
}

/// Whether the process a token names is still running (a zombie counts as dead).
///
/// # Examples
///
/// ```
/// use shmlink::segment::process::{current_token, token_alive};
///
/// let me = current_token();
/// assert!(token_alive(me));
/// assert!(!token_alive(me ^ (1 << 40))); // same pid, other start time: a reused pid
/// assert!(!token_alive(0)); // nobody
/// ```
#[cfg(not(shmlink_loom))]
pub fn token_alive(token: u64) -> bool {
    let pid = token_pid(token);
    if pid == 0 {
        return false;
    }
    match start_ticks_of(pid) {
        Some(start) => start & 0xffff_ffff == token >> 32,
        None => false,
    }
}

/// Under loom there is one "process": token 1, always alive.
///
/// # Examples
///
/// ```
/// use shmlink::segment::process::{current_token, token_alive};
///
/// assert!(token_alive(current_token()));
/// ```
#[cfg(shmlink_loom)]
pub fn current_token() -> u64 {
    1
}

/// Under loom there is one "process", always alive.
///
/// # Examples
///
/// ```
/// use shmlink::segment::process::{current_token, token_alive};
///
/// assert!(token_alive(current_token()));
/// assert!(!token_alive(0));
/// ```
#[cfg(shmlink_loom)]
pub fn token_alive(token: u64) -> bool {
    token != 0
}

/// Whether the process `token` names has certainly exited (or its pid was reused):
/// `/proc/PID` is gone, is a zombie, or started at another time. Unlike
/// `!token_alive(token)`, an unreadable `/proc` counts as alive, so callers that act
/// on a death (clearing a lock slot, say) never act on a guess. `0` (nobody) is not
/// dead.
///
/// # Examples
///
/// ```
/// use shmlink::sync::process::{current_token, token_dead};
///
/// let me = current_token();
/// assert!(!token_dead(me));
/// assert!(token_dead(me ^ (1 << 40))); // same pid, other start time
/// assert!(!token_dead(0));
/// ```
#[cfg(not(shmlink_loom))]
pub fn token_dead(token: u64) -> bool {
    let pid = token_pid(token);
    if pid == 0 {
        return false;
    }
    match proc_stat(pid) {
        Ok(Some((state, start))) => {
            matches!(state, b'Z' | b'X') || start & 0xffff_ffff != token >> 32
        }
        Ok(None) => false,
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Under loom nobody dies.
///
/// # Examples
///
/// ```
/// use shmlink::sync::process::{current_token, token_dead};
///
/// assert!(!token_dead(current_token()));
/// ```
#[cfg(shmlink_loom)]
pub fn token_dead(_token: u64) -> bool {
    false
}

/// Fields of `/proc/PID/stat` after the command name: (state, start time in ticks).
#[cfg(not(shmlink_loom))]
pub(crate) fn proc_stat(pid: u32) -> std::io::Result<Option<(u8, u64)>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may itself contain ") ", so split at the
    // last one. Field 3 (state) follows; field 22 (starttime) is 19 fields later.
    let Some((_, rest)) = text.rsplit_once(')') else {
        return Ok(None);
    };
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next().and_then(|s| s.bytes().next());
    let start = fields.nth(18).and_then(|s| s.parse().ok());
    Ok(state.zip(start))
}

/// Start time of a running (non-zombie) process, `None` if it is gone.
#[cfg(not(shmlink_loom))]
pub(crate) fn start_ticks_of(pid: u32) -> Option<u64> {
    match proc_stat(pid) {
        Ok(Some((state, start))) if !matches!(state, b'Z' | b'X') => Some(start),
        _ => None,
    }
}

#[cfg(all(test, not(shmlink_loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg_attr(miri, ignore = "reads /proc")]
    fn own_token_is_alive_and_others_are_not() {
        let t = current_token();
        assert_eq!(token_pid(t), std::process::id());
        assert!(token_alive(t));
        assert!(!token_alive(t ^ (1 << 40)), "other start time: pid reused");
        assert!(!token_alive(0));
    }
}
