//! pacsgate: the security edge in front of a localhost PACS.
pub mod cli;
