#![no_main]
//! See `custos_burp::fuzz::frames`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_burp::fuzz::frames(data));
