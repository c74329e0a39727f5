//! Kernel pipes that carry page references from memory to a socket: a small pool, and a
//! cap on how many exist at once.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

/// The capacity asked for each pipe: a quarter of a MiB, 64 pages.
const WANTED_CAPACITY: i32 = 256 << 10;

/// Pipes smaller than this cost more system calls than the copies they save.
const SMALLEST_USEFUL: usize = 64 << 10;

/// Pipes in existence at once, each two descriptors and up to 64 of the user's pipe
/// pages (Linux's `pipe-user-pages-soft` allows 16,384 to a user without
/// `CAP_SYS_RESOURCE`). Connections beyond it have their bodies copied.
const MOST_PIPES: usize = 128;

/// Empty pipes kept for the next large response.
const POOL_SIZE: usize = 32;

/// After the kernel refuses a pipe, how long to copy instead of asking again.
const BACK_OFF_MS: u64 = 1000;

static POOL: Mutex<Vec<Pipe>> = Mutex::new(Vec::new());
static LIVE: AtomicUsize = AtomicUsize::new(0);
static REFUSED_AT_MS: AtomicU64 = AtomicU64::new(0);

/// A non-blocking pipe.
#[derive(Debug)]
pub struct Pipe {
    /// The end data leaves by.
    pub read: OwnedFd,
    /// The end data enters by.
    pub write: OwnedFd,
}

impl Pipe {
    /// A pipe of at least 64 KiB: from the pool, else a new one. `None` when
    /// [`MOST_PIPES`] exist, or the kernel refused one in the last second (out of
    /// descriptors, or the user out of pipe pages).
    pub fn take() -> Option<Pipe> {
        if let Some(pipe) = pool().pop() {
            return Some(pipe);
        }
        if now_ms().saturating_sub(REFUSED_AT_MS.load(Ordering::Relaxed)) < BACK_OFF_MS {
            return None;
        }
        if LIVE.fetch_add(1, Ordering::Relaxed) >= MOST_PIPES {
            LIVE.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        match new_pipe() {
            Ok(pipe) => Some(pipe),
            Err(err) => {
                LIVE.fetch_sub(1, Ordering::Relaxed);
                REFUSED_AT_MS.store(now_ms(), Ordering::Relaxed);
                tracing::debug!(error = %err, "no pipe for a large body: copying it");
                None
            }
        }
    }

    /// Keeps an empty pipe for later use; the caller must have sent all it held.
    pub fn give_back(self) {
        let mut pool = pool();
        if pool.len() < POOL_SIZE {
            pool.push(self);
        }
    }
}

impl Drop for Pipe {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A pipe that has counted itself in [`LIVE`] once made.
fn new_pipe() -> io::Result<Pipe> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
    // Larger pipes mean fewer system calls per response. The kernel may refuse (a user's
    // pipe pages are limited): the default then stays.
    let _ = fcntl(&write, FcntlArg::F_SETPIPE_SZ(WANTED_CAPACITY));
    let capacity = fcntl(&write, FcntlArg::F_GETPIPE_SZ)?;
    if usize::try_from(capacity).unwrap_or(0) < SMALLEST_USEFUL {
        return Err(io::Error::other("the kernel gave a pipe too small to help"));
    }
    Ok(Pipe { read, write })
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn pool() -> std::sync::MutexGuard<'static, Vec<Pipe>> {
    POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
