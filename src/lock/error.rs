//! The error of creating or opening a lock by name.

use crate::segment::{CreateError, OpenError};

/// Why a lock could not be created or opened by name.
///
/// # Examples
///
/// ```
/// use shmlink::lock::ObjectError;
/// use shmlink::segment::{OpenError, Segment};
/// use shmlink::lock::Semaphore;
///
/// let err = Semaphore::open(Segment::builder("no-such-semaphore")).unwrap_err();
/// assert!(matches!(err, ObjectError::Open(OpenError::NotFound)));
/// ```
#[derive(Debug)]
pub enum ObjectError<C> {
    /// Creating the segment failed.
    Create(CreateError),
    /// Opening the segment failed (including a wrong kind or protected type).
    Open(OpenError),
    /// The configuration was refused, or the shared state is not a valid one.
    Config(C),
}

impl<C: std::fmt::Display> std::fmt::Display for ObjectError<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create(e) => write!(f, "create: {e}"),
            Self::Open(e) => write!(f, "open: {e}"),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

impl<C: std::error::Error + 'static> std::error::Error for ObjectError<C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Create(e) => Some(e),
            Self::Open(e) => Some(e),
            Self::Config(e) => Some(e),
        }
    }
}

impl<C> From<CreateError> for ObjectError<C> {
    fn from(e: CreateError) -> Self {
        Self::Create(e)
    }
}

impl<C> From<OpenError> for ObjectError<C> {
    fn from(e: OpenError) -> Self {
        Self::Open(e)
    }
}
