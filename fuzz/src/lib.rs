//! Harnesses for skiff's fuzz targets (`fuzz/fuzz_targets/`). Each takes arbitrary bytes and
//! fails only by panicking. The ordinary test suites include the same files with `#[path]` for
//! a bounded, deterministic smoke run that needs no nightly toolchain:
//! `crates/skiff-api/tests/fuzz_smoke.rs` and `crates/skiff-apiserver/tests/fuzz_smoke.rs`.

pub mod api;
pub mod apiserver;
pub mod mutate;
pub mod smoke;
