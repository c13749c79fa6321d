#![no_main]
//! See `custos_smart::fuzz::tables`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_smart::fuzz::tables(data));
