//! tidemark's end-to-end tests against the local stack, as one test binary: each module is one
//! area (`load`, `extract`, `watermark`, …), and linking the AWS SDK, arrow and the drivers once
//! instead of once per area is most of the build time saved.

// Test code: a failed setup or expectation stops the test loudly, with its message.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod clean;
mod deletes;
mod extract;
mod infra;
mod key_order;
mod load;
mod oversize;
mod rehearsal;
mod replay;
mod scd;
mod schema;
mod statemachine;
mod sync;
mod verify;
mod watermark;
mod watermark_steps;
