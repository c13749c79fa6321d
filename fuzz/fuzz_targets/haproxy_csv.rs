#![no_main]
//! See `custos_haproxy::fuzz::stats_csv`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_haproxy::fuzz::stats_csv(data));
