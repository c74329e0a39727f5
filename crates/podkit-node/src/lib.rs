//! # podkit-node: single-node sidecars and adapters
//!
//! Part I of *Designing Distributed Systems* (chapters 2–4): containers that run beside an
//! application on the same machine and augment it without its knowledge.
//!
//! - [`topz`]: `podkit sidecar topz` — chapter 2's `/topz` process readout.
pub mod topz;
