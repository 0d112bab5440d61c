//! The steps the state machine and the CLI call, with their payload types. A Lambda's `main`
//! builds [`crate::services::Services`] once and hands each payload to a step here.

pub mod cleanup;
pub mod counts;
pub mod extract;
pub mod function;
pub mod load;
pub mod local_sync;
pub mod operator;
pub mod preview;
pub mod quality;
pub mod sync;
pub mod watermark;

pub use function::Function;

use crate::error::{Error, Result};
use crate::watermark::LocalOwner;

/// A step's answer as the JSON a Lambda returns.
pub fn answer<T: serde::Serialize>(value: T) -> Result<serde_json::Value> {
    serde_json::to_value(value)
        .map_err(|err| Error::internal(format!("cannot encode the answer: {err}")))
}

/// This process as a lease owner: host name and process id.
pub fn this_process() -> LocalOwner {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".to_owned());
    LocalOwner {
        host,
        pid: std::process::id(),
    }
}

/// Whether a process with `pid` runs on this host.
pub fn process_is_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}
