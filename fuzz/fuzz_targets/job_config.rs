#![no_main]
//! See `custos_backup::fuzz::job_config`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_backup::fuzz::job_config(data));
