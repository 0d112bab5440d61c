//! tidemark keeps Amazon Redshift (or PostgreSQL) in step with MySQL: MySQL rows → Parquet on S3 →
//! `COPY` into the warehouse, with per-table watermarks in S3. This crate holds all the logic and
//! every adapter; the Lambda functions and the CLI only wire and dispatch.

// The habits the code keeps are the workspace's lints (root Cargo.toml). Every public item says
// what it is for (issue #13).
#![deny(missing_docs)]

pub mod asl;
pub mod audit;
pub mod clean;
pub mod config;
pub mod cursor;
pub mod custom_sql;
pub mod dashboard;
pub mod deep_check;
pub mod deletion;
pub mod dependencies;
pub mod error;
pub mod extract;
pub mod faults;
pub mod lambda;
pub mod lineage;
pub mod load;
pub mod manifest;
pub mod metrics;
pub mod naming;
pub mod parquet_sink;
pub mod probe;
pub mod quality;
pub mod replay;
pub mod run;
pub mod schedules;
pub mod schema;
pub mod secret;
pub mod services;
pub mod source;
pub mod steps;
pub mod storage;
pub mod tls;
pub mod verify;
pub mod watermark;

pub use error::{Error, ErrorKind, Result};
