//! Simulated LLM inference. (work in progress)
