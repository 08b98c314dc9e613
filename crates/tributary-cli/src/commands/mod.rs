//! One module per command.

pub mod ask;
pub mod lab;
pub mod sources;
