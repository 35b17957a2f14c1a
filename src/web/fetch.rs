//! The transport under its former name, for the page shell.
pub use super::transport::*;
