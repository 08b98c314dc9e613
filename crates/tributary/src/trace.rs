//! Timeline recorder. (work in progress)
