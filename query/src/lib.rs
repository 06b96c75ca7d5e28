//! The query service: KFL compiled to DataFusion expressions ([`kfl`]), the `entries` table over
//! the catalog's Parquet files and the ingest buffer ([`table`]), and the REST API ([`rest`]).

pub mod auth;
mod boundaries;
mod error;
pub mod flight_sql;
pub mod histogram;
mod json;
pub mod kfl;
mod live;
pub mod openapi;
mod prune;
pub mod rest;
mod service;
pub mod servicemap;
pub mod snapshot;
pub mod sql;
mod sql_rest;
pub mod table;
pub mod time;
pub mod ui;

pub use error::QueryError;
pub use json::batch_to_json;
pub use service::{EntriesPage, EntriesRequest, QueryService, ScanStats, DEFAULT_LIMIT, MAX_LIMIT};
