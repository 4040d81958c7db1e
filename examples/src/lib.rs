//! Example plugins beyond the two samples, built by this crate's build script so that the
//! workspace tests compile and exercise them:
//!
//! - `cpp-plugin/`: a C++17 plugin (an in-memory workload) showing RAII handle tables and an
//!   exception boundary around every `extern "C"` entry point; loaded from [`CPP_PLUGIN_PATH`].
//!   Its local driver (`driver.cpp`) calls every entry point; the tests build both with the
//!   `Makefile` and run the driver under AddressSanitizer + UndefinedBehaviorSanitizer and under
//!   valgrind, and build both with CMake, where CTest runs the driver on the plugin.
//! - `c-skeleton/`: the smallest C plugin that loads, the starting point of docs/guide-c.md,
//!   built against an installed SDK with pkg-config and with CMake by the tests.
//! - `ci/`: a vendor's CI job (conformance, then package and verify) and a GitHub Actions workflow
//!   around it; the tests run the job on the C sample plugin.

/// Path of `libaapi_cpp_example.so` as built by this crate's build script.
pub const CPP_PLUGIN_PATH: &str = concat!(env!("OUT_DIR"), "/libaapi_cpp_example.so");
