//! The conformance runner for aapi workload plugins.
