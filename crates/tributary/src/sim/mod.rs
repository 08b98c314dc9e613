//! Simulated services. (work in progress)
