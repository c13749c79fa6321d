#![no_main]
//! See `custos_burp::fuzz::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_burp::fuzz::config(data));
