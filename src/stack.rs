//! Which application of an [`ObservabilityLayer`](crate::ObservabilityLayer)
//! observes a request.
//!
//! A router can end up with the layer twice around the same request: the
//! monitoring fragment carries its own copy for its fallback, and an
//! application may also layer the merged router. The outermost copy marks the
//! request with its [`StackId`] (one extension insert per request); the layers
//! of every other copy see a foreign id and let the request pass untouched, so
//! it is counted, traced and given an id once.
//!
//! Layers used on their own (outside an `ObservabilityLayer`) carry no id and
//! check nothing: applying one of them twice observes a request twice.

use std::{
    num::NonZeroU64,
    sync::atomic::{AtomicU64, Ordering},
};

use http::Extensions;

/// The id of one `Layer::layer` call of an `ObservabilityLayer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StackId(NonZeroU64);

impl StackId {
    /// A fresh id, distinct from every other of the process.
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        Self(NonZeroU64::new(id).expect("2^64 layer applications"))
    }
}

/// Whether a layer of stack `mine` must let this request pass: another
/// stack marked it first. Always `false` for a layer used on its own.
#[inline]
pub(crate) fn foreign(extensions: &Extensions, mine: Option<StackId>) -> bool {
    mine.is_some_and(|mine| extensions.get::<StackId>().is_some_and(|&owner| owner != mine))
}

/// Marks the request as observed by `mine` unless a stack already did;
/// returns `false` when the request belongs to another stack.
#[inline]
pub(crate) fn claim(extensions: &mut Extensions, mine: Option<StackId>) -> bool {
    let Some(mine) = mine else { return true };
    match extensions.get::<StackId>() {
        Some(&owner) => owner == mine,
        None => {
            extensions.insert(mine);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_stack_owns_the_request() {
        let (a, b) = (StackId::next(), StackId::next());
        assert_ne!(a, b);
        let mut ext = Extensions::new();
        assert!(!foreign(&ext, Some(a)), "unmarked");
        assert!(claim(&mut ext, Some(a)));
        assert!(claim(&mut ext, Some(a)), "its own mark");
        assert!(!foreign(&ext, Some(a)));
        assert!(foreign(&ext, Some(b)));
        assert!(!claim(&mut ext, Some(b)));
        assert!(!foreign(&ext, None), "a layer on its own checks nothing");
        assert!(claim(&mut ext, None));
    }
}
