//! The reference framework: loads workload plugins and runs parallel-stream backups and restores.
