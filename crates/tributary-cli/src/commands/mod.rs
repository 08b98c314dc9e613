//! One module per command.

pub mod ask;
pub mod batch;
pub mod completions;
pub mod config;
pub mod lab;
pub mod man;
pub mod mcp;
pub mod model;
pub mod serve;
pub mod sources;
pub mod worker;
