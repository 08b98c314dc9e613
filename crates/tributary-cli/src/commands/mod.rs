//! One module per command.

pub mod sources;
