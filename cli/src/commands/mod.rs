//! One module per subcommand.
//!
//! ```text
//!  Command::Local  --> local::run
//!  Command::Stream --> stream::run --> shards (ListShards paging, hash-key arithmetic)
//!                                  \-> consumers (enhanced fan-out stream consumers)
//!  Command::MultiLang --> multilang::run --> properties, child processes, processor adapter
//!  Command::Consume --> consume::run --> streams_file (--streams-file: the stream tracker)
//! ```

pub mod consume;
pub mod consumers;
pub mod leases;
pub mod local;
pub mod multilang;
pub mod produce;
pub mod shards;
pub mod stream;
pub mod streams_file;
pub mod tail;
