//! CPU executors. (work in progress)
