//! # podkit-testkit: real servers for podkit's tests
//!
//! DESIGN.md, "Testing": tests talk to real servers wherever one exists. This crate starts
//! the servers the book's patterns sit in front of — redis-server, memcached, nutcracker,
//! etcd, nginx, haproxy, varnishd, MariaDB, PostgreSQL, nats-server — each from its Debian
//! package, on free loopback ports in a temporary directory. `start` returns once the
//! server answers its own protocol; dropping the handle stops the server and its whole
//! process group, so no process outlives a test. A missing binary is an error that names
//! the Debian package to install, never a silent skip.
//!
//! - [`servers`]: one handle type per server;
//! - [`podkit`]: the podkit binary run as a component under test;
//! - [`process`]: the process-group ownership underneath;
//! - [`probe`]: small blocking clients (HTTP/1.1, Redis PING, memcached `version`);
//! - [`ports`]: free ports.

pub mod backend;
pub mod error;
pub mod podkit;
pub mod ports;
pub mod probe;
pub mod process;
pub mod servers;

pub use error::{Error, Result};
pub use nix::sys::signal::Signal;
pub use ports::free_port;
