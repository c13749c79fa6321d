#![no_main]
//! See `custos_haproxy::fuzz::config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_haproxy::fuzz::config(data));
