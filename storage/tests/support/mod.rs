//! Shared fixtures of the storage integration tests.

pub mod moto;
