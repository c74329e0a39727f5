//! Large stored bodies in their own anonymous memory mappings.
//!
//! The process allocator keeps memory it has been given back for a while before it
//! returns it to the kernel, so that it can hand it out again cheaply. For a cache that
//! evicts large bodies all the time, what it keeps adds tens of MiB above `--memory`. A
//! body in its own mapping is unmapped when its last [`Bytes`] is dropped, and the
//! process's memory falls with the cache's count at once.
//!
//! A finished body is registered as a [`StableRegion`]: it is never written again, and its
//! pages stay the kernel's after the unmapping for as long as the kernel refers to them.
//! Plain-TCP connections therefore send it by page reference instead of copying it.

use std::io;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use bytes::Bytes;
use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};
use podkit_core::splice::StableRegion;

/// Bytes in a private anonymous mapping of their own, read-only once filled.
pub struct MappedBody {
    start: NonNull<std::ffi::c_void>,
    len: NonZeroUsize,
    /// Set once the body is read-only; unregistered before the unmapping.
    stable: Option<StableRegion>,
}

// SAFETY: a `MappedBody` is written only through the `MappedFill` that owns it, and is
// read-only once it is shared, so sharing it between threads is sharing immutable bytes.
unsafe impl Send for MappedBody {}
unsafe impl Sync for MappedBody {}

impl MappedBody {
    /// Copies `parts`, in order, into a new mapping and returns its bytes. Fails on an
    /// empty body or when the kernel refuses the mapping; the caller then keeps its parts.
    pub fn copy_of(parts: &[Bytes]) -> io::Result<Bytes> {
        let mut fill = MappedFill::new(parts.iter().map(Bytes::len).sum())?;
        for part in parts {
            fill.push(part);
        }
        fill.finish()
            .map_err(|_| io::Error::other("the parts did not fill the mapping"))
    }
}

/// A mapping of a body's known length, being filled.
pub struct MappedFill {
    body: MappedBody,
    filled: usize,
}

impl MappedFill {
    /// A writable mapping of `len` bytes. Fails on 0 or when the kernel refuses it.
    pub fn new(len: usize) -> io::Result<MappedFill> {
        let len = NonZeroUsize::new(len)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "an empty body"))?;
        // SAFETY: a new private mapping that nothing else refers to.
        let start = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_PRIVATE | MapFlags::MAP_POPULATE,
            )?
        };
        Ok(MappedFill {
            body: MappedBody {
                start,
                len,
                stable: None,
            },
            filled: 0,
        })
    }

    /// Appends `data`; false, and nothing appended, if it would go past the length.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if data.len() > self.body.len.get() - self.filled {
            return false;
        }
        // SAFETY: `data` fits in the writable rest of the mapping, which no one else can
        // see until `finish`.
        unsafe {
            let at = self.body.start.as_ptr().cast::<u8>().add(self.filled);
            std::ptr::copy_nonoverlapping(data.as_ptr(), at, data.len());
        }
        self.filled += data.len();
        true
    }

    /// What has been appended so far.
    pub fn filled(&self) -> &[u8] {
        &self.body.as_ref()[..self.filled]
    }

    /// The bytes, made read-only, once the mapping is full; else the fill back.
    pub fn finish(mut self) -> Result<Bytes, MappedFill> {
        if self.filled != self.body.len.get() {
            return Err(self);
        }
        // SAFETY: the mapping made in `new`, `len` bytes long.
        match unsafe { mprotect(self.body.start, self.body.len.get(), ProtFlags::PROT_READ) } {
            Ok(()) => {
                // SAFETY: the mapping is read-only from here on and is unmapped only after
                // the region is unregistered (`Drop`); its pages are its own.
                self.body.stable = unsafe { StableRegion::register(self.body.as_ref()) };
                Ok(Bytes::from_owner(self.body))
            }
            Err(_) => Err(self),
        }
    }
}

impl AsRef<[u8]> for MappedBody {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr().cast::<u8>(), self.len.get()) }
    }
}

impl Drop for MappedBody {
    fn drop(&mut self) {
        // Unregistered first: once unmapped, the addresses may be given to other memory.
        drop(self.stable.take());
        // SAFETY: the mapping made in `MappedFill::new`; nothing refers to it any more.
        let _ = unsafe { munmap(self.start, self.len.get()) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rss_kib() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    }

    #[test]
    fn a_mapped_body_holds_its_parts_in_order() {
        let parts = [
            Bytes::from(vec![1u8; 300_000]),
            Bytes::from_static(b"middle"),
            Bytes::from(vec![2u8; 5000]),
        ];
        let body = MappedBody::copy_of(&parts).unwrap();
        assert_eq!(body.len(), 305_006);
        assert_eq!(&body[..300_000], &parts[0][..]);
        assert_eq!(&body[300_000..300_006], b"middle");
        assert_eq!(&body[300_006..], &parts[2][..]);
        assert!(MappedBody::copy_of(&[]).is_err());
    }

    #[test]
    fn a_fill_takes_no_more_than_its_length_and_finishes_only_when_full() {
        let mut fill = MappedFill::new(10).unwrap();
        assert!(fill.push(b"abcd"));
        assert!(!fill.push(b"efghijk"), "past the length");
        assert_eq!(fill.filled(), b"abcd");
        let mut fill = fill.finish().expect_err("not full yet");
        assert!(fill.push(b"efghij"));
        assert_eq!(&fill.finish().ok().unwrap()[..], b"abcdefghij");
    }

    #[test]
    fn dropping_the_last_reference_returns_the_memory() {
        let part = Bytes::from(vec![7u8; 64 << 20]);
        let body = MappedBody::copy_of(std::slice::from_ref(&part)).unwrap();
        drop(part);
        let held = rss_kib();
        let slice = body.slice(100..200);
        drop(body);
        assert_eq!(slice[0], 7, "a slice keeps the mapping");
        drop(slice);
        let released = held.saturating_sub(rss_kib());
        assert!(released >= 60 << 10, "only {released} KiB returned");
    }
}
