//! Free ports: podkit-core's allocator, which keeps below the ephemeral range.

pub use podkit_core::ports::free_port;
