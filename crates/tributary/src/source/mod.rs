//! HTTP sources. (work in progress)
