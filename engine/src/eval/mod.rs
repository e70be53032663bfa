//! Evaluation: datasets (CounterFact, zsRE, known_1000) and their metrics.

pub mod dataset;
pub mod metrics;
pub mod records;
pub mod score;
pub mod session;
