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

/// `open_or_create` of a lock in a named segment: the region opened, created (with
/// `init`) or resumed, then `build` checks it; a resumed region that `build` refuses is
/// replaced (see [`resume_or_replace`](crate::segment::resume_or_replace)).
pub(crate) fn open_or_create_in<C: crate::region::ShmSafe, O, E>(
    builder: &crate::segment::SegmentBuilder,
    area_len: usize,
    mut init: impl FnMut(&C, crate::region::RawArea),
    build: impl Fn(std::sync::Arc<crate::segment::ShmRegion<C>>) -> Result<O, E>,
    segment_of: impl Fn(&O) -> &crate::segment::Segment,
) -> Result<(O, crate::segment::Disposition), ObjectError<E>> {
    use crate::segment::{Disposition, ShmRegion};
    crate::segment::resume_or_replace(
        builder.wait_limit(),
        || {
            let (region, how) =
                ShmRegion::<C>::open_or_create_staged(builder.clone(), area_len, &mut init)
                    .map_err(|e| (ObjectError::Open(e), Disposition::Opened))?;
            build(std::sync::Arc::new(region))
                .map(|o| (o, how))
                .map_err(|e| (ObjectError::Config(e), how))
        },
        |o: &O| Some(segment_of(o)),
    )
}
