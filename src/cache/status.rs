use std::fmt;

/// How a cache answered one request: the typed outcome that
/// [`RecordCacheStatusLayer`](super::RecordCacheStatusLayer) records.
///
/// A handler or an inner caching layer that knows the outcome puts it in
/// the *response* extensions; the layer reads it before any header. The
/// variants follow RFC 9211 (`Cache-Status`): a hit is served without
/// forwarding, a stale hit is served past its freshness lifetime (negative
/// `ttl`), a revalidated response is a stored one that the origin confirmed
/// with `304 Not Modified`.
///
/// # Example
///
/// ```
/// use axum::{Extension, Router, routing::get};
/// use tower_observability::cache::{CacheStatus, RecordCacheStatusLayer};
///
/// // With the `axum` feature, `(CacheStatus::Hit, "user")` works too.
/// async fn user() -> (Extension<CacheStatus>, &'static str) {
///     (Extension(CacheStatus::Hit), "user")
/// }
///
/// let app: Router = Router::new().route("/users/{id}", get(user)).layer(RecordCacheStatusLayer::new());
/// # let _ = app;
/// assert_eq!(CacheStatus::StaleHit.as_str(), "stale_hit");
/// assert!(!CacheStatus::Bypass.counts_toward_ratio());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CacheStatus {
    /// Served from the cache, fresh (RFC 9211 `hit`).
    Hit,
    /// Served from the cache past its freshness lifetime (`hit` with a
    /// negative `ttl`; Cloudflare `STALE`, `UPDATING`).
    StaleHit,
    /// Not in the cache (or not usable): fetched from the origin
    /// (`fwd=uri-miss`, `vary-miss`, `miss`, `partial`, or `stale` without a
    /// `304`).
    Miss,
    /// A stored response, validated with the origin, which answered `304`
    /// (`fwd=stale; fwd-status=304`; Cloudflare `REVALIDATED`).
    Revalidated,
    /// The cache was not used for this request (`fwd=bypass`, `method`,
    /// `request`; Cloudflare `BYPASS`, `DYNAMIC`).
    Bypass,
    /// A cache reported something this crate cannot classify.
    Unknown,
}

impl CacheStatus {
    /// Every outcome, in label order.
    pub const ALL: [Self; 6] =
        [Self::Hit, Self::StaleHit, Self::Miss, Self::Revalidated, Self::Bypass, Self::Unknown];

    /// The Prometheus label value (`result`): `hit`, `stale_hit`, `miss`,
    /// `revalidated`, `bypass` or `unknown`.
    #[inline]
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::StaleHit => "stale_hit",
            Self::Miss => "miss",
            Self::Revalidated => "revalidated",
            Self::Bypass => "bypass",
            Self::Unknown => "unknown",
        }
    }

    /// Whether the outcome enters the hit ratio: bypasses (the cache was not
    /// asked) and unknowns are left out.
    #[inline]
    #[must_use]
    pub const fn counts_toward_ratio(self) -> bool {
        !matches!(self, Self::Bypass | Self::Unknown)
    }

    /// Whether the content came from the cache: a hit, a stale hit, or a
    /// revalidated response (the origin sent only a `304`, the body came
    /// from the cache, as Cloudflare counts `REVALIDATED` as served from
    /// cache). Only meaningful when [`counts_toward_ratio`](Self::counts_toward_ratio).
    #[inline]
    #[must_use]
    pub const fn is_hit(self) -> bool {
        matches!(self, Self::Hit | Self::StaleHit | Self::Revalidated)
    }

    /// The position of the outcome in [`ALL`](Self::ALL).
    #[inline]
    pub(crate) const fn index(self) -> usize {
        match self {
            Self::Hit => 0,
            Self::StaleHit => 1,
            Self::Miss => 2,
            Self::Revalidated => 3,
            Self::Bypass => 4,
            Self::Unknown => 5,
        }
    }
}

impl fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets an axum handler return the outcome as a response part:
/// `(CacheStatus::Hit, body)`.
#[cfg(feature = "axum")]
impl axum::response::IntoResponseParts for CacheStatus {
    type Error = std::convert::Infallible;

    fn into_response_parts(
        self,
        mut res: axum::response::ResponseParts,
    ) -> Result<axum::response::ResponseParts, Self::Error> {
        res.extensions_mut().insert(self);
        Ok(res)
    }
}
