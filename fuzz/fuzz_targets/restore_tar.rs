#![no_main]
//! See `custos_backup::fuzz::restore_tar`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| custos_backup::fuzz::restore_tar(data));
