//! Memory that will never be written again, and so may be handed to the kernel by
//! reference instead of copied.
//!
//! A region is registered by its owner and looked up by address: a writer given a slice
//! can ask whether all of it lies in one registered region.

use std::collections::BTreeMap;
use std::sync::RwLock;

/// Registered regions, start address to length.
static REGIONS: RwLock<BTreeMap<usize, usize>> = RwLock::new(BTreeMap::new());

/// A registered region; dropping it unregisters the region.
#[derive(Debug)]
pub struct StableRegion {
    start: usize,
}

impl StableRegion {
    /// Registers `bytes`; `None` if it is empty.
    ///
    /// # Safety
    ///
    /// While the returned guard lives, `bytes` must stay readable and never be written.
    /// Its pages must also never hold other data while the kernel may still refer to them
    /// after the guard is dropped: memory of a mapping of its own, unmapped only after the
    /// guard is dropped, keeps this promise (the kernel's references keep the pages), heap
    /// memory does not (the allocator reuses it).
    pub unsafe fn register(bytes: &[u8]) -> Option<StableRegion> {
        if bytes.is_empty() {
            return None;
        }
        let start = bytes.as_ptr() as usize;
        regions_mut().insert(start, bytes.len());
        Some(StableRegion { start })
    }
}

impl Drop for StableRegion {
    fn drop(&mut self) {
        regions_mut().remove(&self.start);
    }
}

/// Whether all of `bytes` lies inside one registered region.
pub fn is_stable(bytes: &[u8]) -> bool {
    let start = bytes.as_ptr() as usize;
    let regions = REGIONS
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    regions
        .range(..=start)
        .next_back()
        .is_some_and(|(&region, &len)| start + bytes.len() <= region + len)
}

fn regions_mut() -> std::sync::RwLockWriteGuard<'static, BTreeMap<usize, usize>> {
    REGIONS
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_slices_inside_one_registered_region_are_stable() {
        let memory: &'static [u8] = Box::leak(vec![0u8; 4096].into_boxed_slice());
        let (first, second) = memory.split_at(2048);
        assert!(!is_stable(first), "nothing registered yet");
        // SAFETY: leaked memory that the test never writes.
        let first_region = unsafe { StableRegion::register(first) }.unwrap();
        let second_region = unsafe { StableRegion::register(second) }.unwrap();
        assert!(is_stable(first));
        assert!(is_stable(&first[100..2000]));
        assert!(is_stable(&second[..1]));
        assert!(!is_stable(&memory[2000..2100]), "spans two regions");
        drop(first_region);
        assert!(!is_stable(&first[100..2000]));
        assert!(is_stable(second));
        drop(second_region);
        assert!(!is_stable(second));
        assert!(unsafe { StableRegion::register(&[]) }.is_none());
    }
}
