//! The `aapi-host` command line.

fn main() {}
