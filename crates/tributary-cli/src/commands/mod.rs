//! One module per command.

pub mod ask;
pub mod batch;
pub mod lab;
pub mod serve;
pub mod sources;
