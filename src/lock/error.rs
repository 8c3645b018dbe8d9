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
/// assert_eq!(err.open_error(), Some(&OpenError::NotFound));
/// assert_eq!(
///     err.to_string(),
///     "cannot open segment `no-such-semaphore`: no such segment"
/// );
/// ```
#[derive(Debug)]
pub enum ObjectError<C> {
    /// Creating the segment failed.
    Create {
        /// The segment's name.
        name: String,
        /// Why.
        error: CreateError,
    },
    /// Opening the segment failed (including a wrong kind or protected type).
    Open {
        /// The segment's name.
        name: String,
        /// Why.
        error: OpenError,
    },
    /// The configuration was refused, or the shared state is not a valid one.
    Config(C),
}

impl<C: std::fmt::Display> std::fmt::Display for ObjectError<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create { name, error } => error.fmt_for(name, f),
            Self::Open { name, error } => error.fmt_for(name, f),
            Self::Config(e) => write!(f, "{e}"),
        }
    }
}

impl<C: std::error::Error + 'static> std::error::Error for ObjectError<C> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Create { error, .. } => Some(error),
            Self::Open { error, .. } => Some(error),
            Self::Config(e) => Some(e),
        }
    }
}

impl<C> ObjectError<C> {
    /// `error` of creating the segment `builder` names.
    pub(crate) fn create(builder: &crate::segment::SegmentBuilder, error: CreateError) -> Self {
        Self::Create {
            name: builder.raw_name().to_owned(),
            error,
        }
    }

    /// `error` of opening the segment `builder` names.
    pub(crate) fn open(builder: &crate::segment::SegmentBuilder, error: OpenError) -> Self {
        Self::Open {
            name: builder.raw_name().to_owned(),
            error,
        }
    }

    /// The segment-layer error of opening, if that is what failed (to match on its
    /// kind); see the type's example.
    pub fn open_error(&self) -> Option<&OpenError> {
        match self {
            Self::Open { error, .. } => Some(error),
            _ => None,
        }
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
                    .map_err(|e| (ObjectError::open(builder, e), Disposition::Opened))?;
            build(std::sync::Arc::new(region))
                .map(|o| (o, how))
                .map_err(|e| (ObjectError::Config(e), how))
        },
        |o: &O| Some(segment_of(o)),
        |e| ObjectError::open(builder, e),
    )
}
