//! The real `tidemark` binary against the local stack, as one test binary: each module is one
//! area (`workflows`, `watermark`, `faults`, …); `support` starts the stack and runs the binary.

// Test code: a failed setup or expectation stops the test loudly, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod after_load;
mod aws;
mod bad_input;
mod concurrency;
mod connections;
mod counts;
mod deletes;
mod dependencies;
mod faults;
mod lineage;
mod network;
mod quality;
mod replay;
mod s3clean;
mod scd;
mod schedules;
mod secrets;
mod verify;
mod watermark;
mod workflows;
mod wrong_data;
