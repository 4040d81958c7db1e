//! The aapi backup plugin SDK.
//!
//! - [`abi`]: the C ABI version 1 (types, constants, entry point prototypes), the single source of
//!   `include/aapi.h`.
//! - [`codes`]: names and messages of the return codes.
//! - [`version`]: the static ABI marker, the required symbols and the compatibility rule.
//! - [`props`]: well-known session property keys.
//! - [`workload`]: reader and writer of the workload file format.
//! - [`plugin`]: the plugin SDK: safe traits, the [`export_plugin!`] macro and the runtime behind
//!   the exported entry points (panic boundary, argument checks, handles, call order, threads).
//!
//! The rules every item carries are in docs/contract.md, each with a clause ID.

pub mod abi;
pub mod codes;
pub mod plugin;
pub mod props;
pub mod version;
pub mod workload;
