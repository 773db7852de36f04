//! Brokers failing under a warm function.
