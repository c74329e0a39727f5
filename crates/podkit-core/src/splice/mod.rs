//! Sending large immutable bodies without copying them into the kernel.
//!
//! A TCP `write` copies every byte into kernel buffers; for a cache sending the same
//! MiB-sized objects again and again, that copy was four tenths of its core's time.
//! [`SpliceStream`] sends a slice that lies in a registered [`StableRegion`] by reference
//! instead: `vmsplice` puts references to its pages into a pipe, and `splice` moves them
//! from the pipe into the socket. Everything else is written as usual.
//!
//! Bytes moved into the pipe count as written, as with a buffered writer: they reach the
//! socket on the next write, flush or shutdown. Pipes come from a small pool, and their
//! number is capped; without one, a body is copied as usual.

mod pipe;
mod regions;

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use nix::fcntl::{splice, vmsplice, SpliceFFlags};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;

use pipe::Pipe;
pub use regions::{is_stable, StableRegion};

/// Slices shorter than this are copied: a page-reference handover costs more than it saves.
pub const SPLICE_MIN: usize = 64 << 10;

/// A TCP stream that sends stable slices by page reference (see the module docs).
#[derive(Debug)]
pub struct SpliceStream {
    stream: TcpStream,
    /// Held while it carries bytes; back in the pool once empty.
    pipe: Option<Pipe>,
    /// Bytes in the pipe not yet in the socket.
    in_pipe: usize,
    /// Bytes handed to the kernel by page reference so far.
    spliced: u64,
    /// Set once bytes counted as written could not be sent: every later call fails.
    failed: Option<io::ErrorKind>,
}

impl SpliceStream {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> SpliceStream {
        SpliceStream {
            stream,
            pipe: None,
            in_pipe: 0,
            spliced: 0,
            failed: None,
        }
    }

    /// Bytes this stream has handed to the kernel by page reference rather than copied.
    pub fn spliced_bytes(&self) -> u64 {
        self.spliced
    }

    /// Moves what waits in the pipe into the socket; the pipe goes back to the pool.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(kind) = self.failed {
            return Poll::Ready(Err(kind.into()));
        }
        while self.in_pipe > 0 {
            if let Err(err) = ready!(self.stream.poll_write_ready(cx)) {
                return Poll::Ready(Err(self.broken(err)));
            }
            let Some(pipe) = self.pipe.as_ref() else {
                return Poll::Ready(Err(self.broken(io::ErrorKind::Other.into())));
            };
            let moved = self.stream.try_io(Interest::WRITABLE, || {
                let flags = SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK;
                Ok(splice(
                    &pipe.read,
                    None,
                    &self.stream,
                    None,
                    self.in_pipe,
                    flags,
                )?)
            });
            match moved {
                Ok(0) => return Poll::Ready(Err(self.broken(io::ErrorKind::WriteZero.into()))),
                Ok(n) => self.in_pipe -= n,
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => continue,
                Err(err) => return Poll::Ready(Err(self.broken(err))),
            }
        }
        if let Some(pipe) = self.pipe.take() {
            pipe.give_back();
        }
        Poll::Ready(Ok(()))
    }

    /// Puts `bufs`, in order, into the empty pipe: stable slices by page reference, the
    /// rest (such as a response head) copied. Returns how many bytes went in; 0 if the
    /// kernel took none, and the caller then writes them as usual.
    fn fill_pipe(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        let Some(pipe) = self.pipe.as_ref() else {
            return 0;
        };
        let mut accepted = 0;
        for buf in bufs.iter().filter(|buf| !buf.is_empty()) {
            let by_reference = buf.len() >= SPLICE_MIN && is_stable(buf);
            let put = if by_reference {
                vmsplice(&pipe.write, &[*buf], SpliceFFlags::SPLICE_F_NONBLOCK)
            } else {
                nix::unistd::write(&pipe.write, buf)
            };
            let Ok(n) = put else { break };
            accepted += n;
            if by_reference {
                self.spliced += n as u64;
            }
            if n < buf.len() {
                break;
            }
        }
        self.in_pipe += accepted;
        accepted
    }

    /// Records that bytes already counted as written are lost, and passes the error on.
    fn broken(&mut self, err: io::Error) -> io::Error {
        self.failed = Some(err.kind());
        self.pipe = None;
        self.in_pipe = 0;
        err
    }
}

impl AsyncRead for SpliceStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SpliceStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Bytes already in the pipe go first, so that the order holds.
        ready!(this.poll_drain(cx))?;
        let worth_splicing = bufs
            .iter()
            .any(|buf| buf.len() >= SPLICE_MIN && is_stable(buf));
        if worth_splicing {
            this.pipe = Pipe::take();
        }
        let accepted = this.fill_pipe(if worth_splicing { bufs } else { &[] });
        if accepted == 0 {
            // Nothing stable, no pipe to be had, or the kernel took nothing: as usual.
            if let Some(pipe) = this.pipe.take() {
                pipe.give_back();
            }
            return Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        }
        // Start sending now. What the socket cannot take yet waits for the next call, and
        // so does an error: these bytes are accepted either way.
        let _ = this.poll_drain(cx);
        Poll::Ready(Ok(accepted))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_drain(cx))?;
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroUsize;
    use std::ptr::NonNull;

    use nix::sys::mman::{mmap_anonymous, mprotect, munmap, MapFlags, ProtFlags};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A registered read-only mapping of `len` bytes of a known pattern.
    struct Region {
        start: NonNull<std::ffi::c_void>,
        len: usize,
        stable: Option<StableRegion>,
    }

    impl Region {
        /// Filled with [`pattern`].
        fn new(len: usize) -> Region {
            Region::filled(len, pattern)
        }

        fn filled(len: usize, byte_at: impl Fn(usize) -> u8) -> Region {
            let size = NonZeroUsize::new(len).unwrap();
            let flags = MapFlags::MAP_PRIVATE;
            let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
            // SAFETY: a new private mapping, written here and then made read-only.
            let start = unsafe { mmap_anonymous(None, size, prot, flags) }.unwrap();
            let bytes: &mut [u8] =
                unsafe { std::slice::from_raw_parts_mut(start.as_ptr().cast(), len) };
            for (i, byte) in bytes.iter_mut().enumerate() {
                *byte = byte_at(i);
            }
            unsafe { mprotect(start, len, ProtFlags::PROT_READ) }.unwrap();
            let mut region = Region {
                start,
                len,
                stable: None,
            };
            // SAFETY: read-only from here on; unmapped only after unregistering (`Drop`).
            region.stable = unsafe { StableRegion::register(region.bytes()) };
            region
        }

        fn bytes(&self) -> &[u8] {
            unsafe { std::slice::from_raw_parts(self.start.as_ptr().cast(), self.len) }
        }
    }

    impl Drop for Region {
        fn drop(&mut self) {
            drop(self.stable.take());
            unsafe { munmap(self.start, self.len) }.unwrap();
        }
    }

    fn pattern(i: usize) -> u8 {
        (i % 251) as u8
    }

    async fn connected() -> (SpliceStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (SpliceStream::new(accepted.unwrap().0), client.unwrap())
    }

    #[tokio::test]
    async fn stable_and_copied_slices_arrive_whole_and_in_order() {
        let region = Region::new((1 << 20) + 123);
        let (mut sender, mut receiver) = connected().await;
        let reader = tokio::spawn(async move {
            let mut received = Vec::new();
            receiver.read_to_end(&mut received).await.unwrap();
            received
        });
        let body = region.bytes();
        let mut sent = Vec::new();
        for parts in [
            vec![&b"head\r\n"[..], body, &b"tail"[..]],
            vec![&body[4096..200_000]],
            vec![&b"between"[..]],
            vec![body, body],
        ] {
            let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let mut slices = &mut slices[..];
            while !slices.is_empty() {
                let n = std::future::poll_fn(|cx| {
                    Pin::new(&mut sender).poll_write_vectored(cx, slices)
                })
                .await
                .unwrap();
                IoSlice::advance_slices(&mut slices, n);
            }
            sent.extend(parts.concat());
        }
        assert!(
            sender.spliced_bytes() >= 2 << 20,
            "the stable slices were copied"
        );
        sender.shutdown().await.unwrap();
        let received = reader.await.unwrap();
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the bytes differ");
    }

    /// One write call; returns how many bytes it took. Whatever it took is in the
    /// kernel (socket or pipe), whatever the socket buffers' sizes.
    async fn write_once(sender: &mut SpliceStream, bytes: &[u8]) -> usize {
        let slices = [IoSlice::new(bytes)];
        std::future::poll_fn(|cx| Pin::new(&mut *sender).poll_write_vectored(cx, &slices))
            .await
            .unwrap()
    }

    /// Flushes `sender` while reading `len` bytes from `receiver`.
    async fn flush_and_read(
        sender: &mut SpliceStream,
        receiver: &mut TcpStream,
        len: usize,
    ) -> Vec<u8> {
        let mut received = vec![0u8; len];
        let (flushed, read) = tokio::join!(sender.flush(), receiver.read_exact(&mut received));
        flushed.unwrap();
        read.unwrap();
        received
    }

    #[tokio::test]
    async fn only_stable_slices_are_sent_by_reference() {
        let len = 1 << 20;
        let region = Region::new(len);
        let mut heap = vec![7u8; len];
        let (mut sender, mut receiver) = connected().await;
        let from_region = write_once(&mut sender, region.bytes()).await;
        assert_eq!(sender.spliced_bytes(), from_region as u64);
        // Nothing has been read yet. Changing the source now shows whether the kernel
        // holds a copy or refers to the region's pages. (A registered region is never
        // written: it is unregistered first. Writing an exclusive anonymous page in place
        // while the kernel refers to it is Linux 5.19's behaviour and later.)
        let mut region = region;
        drop(region.stable.take());
        unsafe {
            mprotect(
                region.start,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
            )
        }
        .unwrap();
        unsafe { std::ptr::write_bytes(region.start.as_ptr().cast::<u8>(), 0xEE, len) };
        let received = flush_and_read(&mut sender, &mut receiver, from_region).await;
        assert!(
            received.iter().all(|b| *b == 0xEE),
            "the stable region was copied"
        );
        assert!(sender.pipe.is_none(), "an empty pipe goes back to the pool");
        let from_heap = write_once(&mut sender, &heap).await;
        assert_eq!(
            sender.spliced_bytes(),
            from_region as u64,
            "heap bytes spliced"
        );
        heap.fill(0xEE);
        let received = flush_and_read(&mut sender, &mut receiver, from_heap).await;
        assert!(
            received.iter().all(|b| *b == 7),
            "the heap bytes were not copied"
        );
    }

    #[tokio::test]
    async fn unmapping_after_the_write_does_not_change_the_bytes_in_flight() {
        let (mut sender, mut receiver) = connected().await;
        let len = 1 << 20;
        let in_flight = {
            let region = Region::new(len);
            write_once(&mut sender, region.bytes()).await
            // The receiver has read nothing: the bytes are in the kernel, which refers
            // to the pages of a mapping that is now unregistered and unmapped.
        };
        assert_eq!(sender.spliced_bytes(), in_flight as u64);
        // New memory may now take the old addresses and be written.
        let scribbles: Vec<Region> = (0..4).map(|_| Region::filled(len, |_| 0x55)).collect();
        let _heap: Vec<u8> = vec![0xAA; 8 << 20];
        let received = flush_and_read(&mut sender, &mut receiver, in_flight).await;
        let wrong = received
            .iter()
            .enumerate()
            .filter(|(i, b)| **b != pattern(*i))
            .count();
        assert_eq!(wrong, 0, "{wrong} bytes changed in flight");
        drop(scribbles);
    }
}
