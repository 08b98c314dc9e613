//! The loop-lag monitor. (work in progress)
