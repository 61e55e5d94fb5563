#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skiff_fuzz::api::server_side_apply(data));
