//! The behaviour suite on an in-memory store written from keycard's public
//! API alone (`tests/common/memory.rs`): a third party's store passes the
//! same tests as keycard's own. The request-connection suite needs SQL and
//! is not run here.

mod common;
mod suite;

behaviour_suite!(crate::common::memory::memory);
