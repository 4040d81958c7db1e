//! Sample aapi workload plugin for directory trees (the files workload), in Rust.
