#![no_main]
//! See `custos_smart_wire::fuzz::stream`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_smart_wire::fuzz::stream(data));
