//! What the unit tests share.

pub mod rng;
