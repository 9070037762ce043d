//! RFC 9211 `Cache-Status`, `X-Cache` and `CF-Cache-Status` parsing, and the
//! header precedence: never panics, whatever the bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_observability::cache::{CacheStatus, parse_cache_status, parse_cf_cache_status, parse_x_cache};

fuzz_target!(|data: &[u8]| {
    let _ = parse_cache_status(data, None);
    let _ = parse_cache_status(data, Some("ExampleCache"));
    let _ = parse_x_cache(data);
    let _ = parse_cf_cache_status(data);
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert("cache-status", value.clone());
        headers.insert("x-cache", value);
        let _ = CacheStatus::from_headers(&headers, None);
    }
});
