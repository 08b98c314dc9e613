//! One module per command.

pub mod ask;
pub mod sources;
