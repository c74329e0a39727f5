//! Kernel pipes that carry page references from memory to a socket, kept in a small pool.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Mutex;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The capacity asked for each pipe: a quarter of a MiB, 64 pages.
const WANTED_CAPACITY: i32 = 256 << 10;

/// Pipes smaller than this cost more system calls than the copies they save.
const SMALLEST_USEFUL: usize = 64 << 10;

/// Empty pipes kept for the next large response.
const POOL_SIZE: usize = 64;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());

/// A non-blocking pipe.
#[derive(Debug)]
pub struct Pipe {
    /// The end data leaves by.
    pub read: OwnedFd,
    /// The end data enters by.
    pub write: OwnedFd,
}

impl Pipe {
    /// A pipe of at least [`SMALLEST_USEFUL`] bytes: from the pool, else a new one.
    /// Fails when the process is out of descriptors or the user out of pipe pages.
    pub fn take() -> io::Result<Pipe> {
        if let Some(pipe) = pool().pop() {
            return Ok(pipe);
        }
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        // Larger pipes mean fewer system calls per response. The kernel may refuse (a
        // user's pipe pages are limited): the default then stays.
        let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(WANTED_CAPACITY));
        let capacity = fcntl(&write, FcntlArg::F_GETPIPE_SZ)?;
        if usize::try_from(capacity).unwrap_or(0) < SMALLEST_USEFUL {
            return Err(io::Error::other("the kernel gave a pipe too small to help"));
        }
        Ok(Pipe { read, write })
    }

    /// Keeps an empty pipe for later use; the caller must have sent all it held.
    pub fn give_back(self) {
        let mut pool = pool();
        if pool.len() < POOL_SIZE {
            pool.push(self);
        }
    }
}

fn pool() -> std::sync::MutexGuard<'static, Vec<Pipe>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
