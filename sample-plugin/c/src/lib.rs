//! The `files` sample plugin written in C99 against `include/aapi.h` and libc only (the C sources
//! are in `src/`, with a Makefile and a CMakeLists.txt beside this crate). The build script
//! compiles them with `-Wall -Wextra -Werror` into a shared object; tests load it from
//! [`PLUGIN_PATH`].

/// Path of `libaapi_sample_plugin_c.so` as built by this crate's build script.
pub const PLUGIN_PATH: &str = concat!(env!("OUT_DIR"), "/libaapi_sample_plugin_c.so");
