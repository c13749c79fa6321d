#![no_main]
//! See `custos_smart::fuzz::smartctl_json`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_smart::fuzz::smartctl_json(data));
