//! Request id validation: never panics, and accepts exactly 1..=128 bytes
//! of `[A-Za-z0-9-_.:+/=@]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tower_observability::request_id::{MAX_LEN, validate};

fuzz_target!(|data: &[u8]| {
    let expected = (1..=MAX_LEN).contains(&data.len())
        && data.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b));
    assert_eq!(validate(data).is_ok(), expected);
});
