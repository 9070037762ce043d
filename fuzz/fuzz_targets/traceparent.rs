//! W3C `traceparent` validation: never panics, and what it accepts has the
//! Level 1 shape.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_observability::trace::is_valid_traceparent;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data)
        && is_valid_traceparent(text)
    {
        let parts: Vec<&str> = text.splitn(5, '-').collect();
        assert!(parts.len() >= 4);
        assert_eq!((parts[0].len(), parts[1].len(), parts[2].len(), parts[3].len()), (2, 32, 16, 2));
        assert_ne!(parts[0], "ff");
        assert!(parts[1].bytes().any(|b| b != b'0') && parts[2].bytes().any(|b| b != b'0'));
    }
});
