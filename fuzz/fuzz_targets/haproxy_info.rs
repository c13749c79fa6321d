#![no_main]
//! See `custos_haproxy::fuzz::show_info`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_haproxy::fuzz::show_info(data));
