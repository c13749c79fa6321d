#![no_main]
//! See `custos_burp::fuzz::json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_burp::fuzz::json(data));
