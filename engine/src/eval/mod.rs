//! Evaluation: CounterFact and zsRE metrics.

pub mod metrics;
