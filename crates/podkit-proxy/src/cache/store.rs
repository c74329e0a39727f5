//! Where cached responses live: a memory-bounded store (quick_cache's S3-FIFO, which keeps
//! its hit rate under scans) of responses by primary key, each key holding its Vary
//! variants. Every entry's weight counts its body, its head and a fixed overhead, so the
//! sum stays under `--memory`. Bans by prefix are applied to the whole store at once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName};
use quick_cache::sync::Cache;
use quick_cache::{Lifecycle, OptionsBuilder, Weighter};

use super::invalidations::{Invalidated, InvalidationLog};
use super::mapped::{MappedBody, MappedFill};
use super::policy::{vary_values, Stored};

/// Bytes counted for an entry beyond its body and head: key, bookkeeping, allocator slack.
pub const ENTRY_OVERHEAD: u64 = 512;

/// The largest block of a stored body. A body is sent a block per frame, and each frame is
/// one write to the client's socket: a 1 MiB object leaves in one write, not sixteen.
pub const BLOCK: usize = 1 << 20;

/// The first block of a body of unknown length; each further block doubles, up to
/// [`BLOCK`], so that a small body of unknown length does not reserve a large block.
pub const FIRST_BLOCK: usize = 16 << 10;

/// Bodies of at least this many bytes are kept in a memory mapping of their own, which
/// goes back to the kernel as soon as the body is evicted and no client is being sent it.
pub const MAPPED_MIN: u64 = 256 << 10;

/// A stored body: one block, or several for a small body of unknown length.
#[derive(Debug, Clone, Default)]
pub struct StoredBody {
    blocks: Vec<Bytes>,
    len: u64,
}

/// A body being filled from the origin.
///
/// A body whose length the origin gave, of [`MAPPED_MIN`] bytes or more, is written
/// straight into a mapping of its own (see [`MappedFill`]). Any other body goes into
/// blocks, each up to [`BLOCK`] bytes: one of the given length, or for a body of unknown
/// length blocks from [`FIRST_BLOCK`] doubling, so that a small body does not reserve a
/// large block. One that ends at [`MAPPED_MIN`] bytes or more is then copied into a
/// mapping.
pub struct BodyFill {
    body: StoredBody,
    /// The block being filled.
    open: BytesMut,
    /// The size of the next block to open.
    next_block: usize,
    mapped: Option<MappedFill>,
}

impl Default for BodyFill {
    /// An empty body of unknown length.
    fn default() -> BodyFill {
        BodyFill::expecting(None)
    }
}

impl BodyFill {
    /// An empty body; `expected` is its length when the origin said it.
    pub fn expecting(expected: Option<u64>) -> BodyFill {
        let mapped = expected
            .filter(|len| *len >= MAPPED_MIN)
            .and_then(|len| usize::try_from(len).ok())
            .and_then(|len| MappedFill::new(len).ok());
        let first = expected.map_or(FIRST_BLOCK, |len| {
            usize::try_from(len).unwrap_or(BLOCK).clamp(1, BLOCK)
        });
        BodyFill {
            body: StoredBody::default(),
            open: BytesMut::new(),
            next_block: first,
            mapped,
        }
    }

    /// Bytes appended so far.
    pub fn len(&self) -> u64 {
        self.body.len
    }

    /// Whether nothing has been appended.
    pub fn is_empty(&self) -> bool {
        self.body.len == 0
    }

    /// Appends `data`.
    pub fn extend(&mut self, data: &[u8]) {
        if let Some(mapped) = &mut self.mapped {
            if mapped.push(data) {
                self.body.len += data.len() as u64;
                return;
            }
            // More than the origin said: the rest goes into blocks.
            let filled = Bytes::copy_from_slice(mapped.filled());
            self.mapped = None;
            self.next_block = BLOCK;
            self.body.blocks.push(filled);
        }
        self.fill_blocks(data);
    }

    /// Appends `data` to the blocks, filling the last before opening a new one.
    fn fill_blocks(&mut self, mut data: &[u8]) {
        self.body.len += data.len() as u64;
        while !data.is_empty() {
            if self.open.capacity() == self.open.len() {
                if !self.open.is_empty() {
                    self.body
                        .blocks
                        .push(std::mem::take(&mut self.open).freeze());
                }
                self.open = BytesMut::with_capacity(self.next_block);
                self.next_block = self.next_block.saturating_mul(2).min(BLOCK);
            }
            let room = self.open.capacity() - self.open.len();
            let take = room.min(data.len());
            self.open.extend_from_slice(&data[..take]);
            data = &data[take..];
        }
    }

    /// The whole body. The last block is kept as it is when full, else copied to its
    /// exact length, so that the body holds only its own bytes; a large body in blocks is
    /// copied into a mapping, and stays in its blocks if the kernel refuses one.
    pub fn finish(mut self) -> StoredBody {
        if let Some(mapped) = self.mapped.take() {
            match mapped.finish() {
                Ok(bytes) => {
                    self.body.blocks = vec![bytes];
                    return self.body;
                }
                // Shorter than the origin said, or not sealed read-only: kept by copy.
                Err(mapped) => self
                    .body
                    .blocks
                    .push(Bytes::copy_from_slice(mapped.filled())),
            }
        }
        let mut body = self.body;
        match self.open.len() {
            0 => {}
            full if full == self.open.capacity() => body.blocks.push(self.open.freeze()),
            _ => body.blocks.push(Bytes::copy_from_slice(&self.open)),
        }
        if body.len >= MAPPED_MIN {
            match MappedBody::copy_of(&body.blocks) {
                Ok(bytes) => body.blocks = vec![bytes],
                Err(err) => tracing::debug!(error = %err, "a large body stays on the heap"),
            }
        }
        body
    }
}

impl StoredBody {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the body is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes of memory held.
    pub fn allocated(&self) -> u64 {
        self.len
    }

    /// The blocks, in order.
    pub fn blocks(&self) -> &[Bytes] {
        &self.blocks
    }

    /// A body of one block (for tests and small bodies).
    pub fn from_bytes(bytes: Bytes) -> StoredBody {
        StoredBody {
            len: bytes.len() as u64,
            blocks: vec![bytes],
        }
    }
}

/// One stored response.
#[derive(Debug)]
pub struct Entry {
    pub stored: Stored,
    pub body: StoredBody,
    /// The Vary fields of the response and the request's values of them.
    pub vary: Vec<HeaderName>,
    pub vary_values: Vec<Option<String>>,
}

impl Entry {
    /// Bytes this entry is charged.
    pub fn weight(&self) -> u64 {
        let head: usize = self
            .stored
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 32)
            .sum();
        self.body.allocated() + head as u64 + ENTRY_OVERHEAD
    }

    /// Whether this variant answers a request with `headers`.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        vary_values(&self.vary, headers) == self.vary_values
    }
}

/// A copy of `headers` that owns its bytes. Header values parsed by hyper are slices of
/// its read buffer; storing them as they are would keep that whole buffer (head and the
/// first body bytes) alive for as long as the entry lives.
pub fn owned_headers(headers: &HeaderMap) -> HeaderMap {
    let mut owned = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name =
            HeaderName::from_bytes(name.as_str().as_bytes()).unwrap_or_else(|_| name.clone());
        let copy =
            http::HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.append(name, copy);
    }
    owned
}

/// The variants stored under one key.
pub type Variants = Arc<Vec<Arc<Entry>>>;

#[derive(Clone, Debug)]
struct VariantsWeighter;

impl Weighter<String, Variants> for VariantsWeighter {
    fn weight(&self, key: &String, variants: &Variants) -> u64 {
        key.len() as u64 + variants.iter().map(|e| e.weight()).sum::<u64>()
    }
}

/// Counts evictions.
#[derive(Clone, Debug, Default)]
struct CountEvictions(Arc<AtomicU64>);

impl Lifecycle<String, Variants> for CountEvictions {
    type RequestState = ();

    fn on_evict(&self, _state: &mut (), _key: String, variants: Variants) {
        self.0.fetch_add(variants.len() as u64, Ordering::Relaxed);
    }
}

/// Invalidations remembered for fetches still under way; a fetch that began before the
/// oldest of them does not store.
const RECENT_INVALIDATIONS: usize = 4096;

/// Most shards a store is split into (each with a lock of its own).
const MAX_SHARDS: u64 = 16;

/// As many shards as leave each at least twice `largest_entry` (an entry can take at most
/// half of its shard), a power of two from 1 to [`MAX_SHARDS`].
fn shards_for(capacity: u64, largest_entry: u64) -> usize {
    let fitting = capacity / largest_entry.saturating_mul(2).max(1);
    let mut shards = 1;
    while shards * 2 <= fitting.min(MAX_SHARDS) {
        shards *= 2;
    }
    shards as usize
}

/// The memory-bounded store.
pub struct Store {
    cache:
        Cache<String, Variants, VariantsWeighter, quick_cache::DefaultHashBuilder, CountEvictions>,
    evictions: Arc<AtomicU64>,
    capacity: u64,
    shard_capacity: u64,
    /// Held while storing or invalidating, so that the two never interleave.
    invalidations: Mutex<InvalidationLog>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("entries", &self.cache.len())
            .field("weight", &self.cache.weight())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Store {
    /// A store holding at most `capacity` bytes, in which an entry of `largest_entry`
    /// bytes fits when `capacity` is at least twice that.
    pub fn new(capacity: u64, largest_entry: u64) -> Store {
        let shards = shards_for(capacity, largest_entry);
        let estimated_items = (capacity / (16 << 10)).clamp(64, 1 << 20) as usize;
        let options = OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(estimated_items)
            .weight_capacity(capacity)
            .build()
            .or_else(|_| {
                OptionsBuilder::new()
                    .estimated_items_capacity(64)
                    .weight_capacity(capacity)
                    .build()
            })
            .expect("options with only capacities set are valid");
        let counter = CountEvictions::default();
        let evictions = counter.0.clone();
        let cache = Cache::with_options(options, VariantsWeighter, Default::default(), counter);
        let shard_capacity = cache.shard_capacity();
        Store {
            cache,
            evictions,
            capacity,
            shard_capacity,
            invalidations: Mutex::new(InvalidationLog::new(RECENT_INVALIDATIONS)),
        }
    }

    /// The largest entry the store can hold at all.
    pub fn max_entry(&self) -> u64 {
        self.shard_capacity / 2
    }

    /// The variant of `key` that matches the request's `headers`.
    pub fn lookup(&self, key: &str, headers: &HeaderMap) -> Option<Arc<Entry>> {
        let variants = self.cache.get(key)?;
        variants.iter().find(|e| e.matches(headers)).cloned()
    }

    /// The generation of invalidations now: a fetch notes it before asking the origin,
    /// and gives it to [`Store::insert`].
    pub fn generation(&self) -> u64 {
        self.log().generation()
    }

    /// Stores `entry` under `key` as its newest variant, unless the key was invalidated
    /// since generation `fetched_at` (then returns false). It replaces the variant with
    /// the same Vary values, and every variant that varies on other fields: those came
    /// before the origin changed its Vary, and the most recent response is the one to use
    /// (§4.1).
    pub fn insert(&self, key: &str, entry: Entry, fetched_at: u64) -> bool {
        let log = self.log();
        if !log.allows(key, fetched_at) {
            return false;
        }
        let entry = Arc::new(entry);
        let mut variants = vec![entry.clone()];
        if let Some(older) = self.cache.peek(key) {
            variants.extend(
                older
                    .iter()
                    .filter(|e| e.vary == entry.vary && e.vary_values != entry.vary_values)
                    .cloned(),
            );
        }
        self.cache.insert(key.to_string(), Arc::new(variants));
        true
    }

    /// Removes every variant of `key`; returns whether there was any.
    pub fn purge(&self, key: &str) -> bool {
        let mut log = self.log();
        log.record(Invalidated::Key(key.to_string()));
        self.cache.remove(key).is_some()
    }

    /// Removes every key starting with `prefix`; returns how many.
    pub fn ban(&self, prefix: &str) -> usize {
        let mut log = self.log();
        log.record(Invalidated::Prefix(prefix.to_string()));
        let before = self.cache.len();
        self.cache.retain(|key, _| !key.starts_with(prefix));
        before - self.cache.len()
    }

    fn log(&self) -> MutexGuard<'_, InvalidationLog> {
        self.invalidations
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Keys stored.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Bytes charged for what is stored.
    pub fn weight(&self) -> u64 {
        self.cache.weight()
    }

    /// Entries evicted so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn filled(expected: Option<u64>, len: usize, chunk: usize) -> Vec<usize> {
        let mut fill = BodyFill::expecting(expected);
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        for piece in data.chunks(chunk) {
            fill.extend(piece);
        }
        let body = fill.finish();
        let whole: Vec<u8> = body.blocks().iter().flat_map(|b| b.to_vec()).collect();
        assert!(whole == data, "the body's bytes differ");
        assert_eq!(body.len(), len as u64);
        body.blocks().iter().map(Bytes::len).collect()
    }

    #[test]
    fn a_body_of_known_length_fills_blocks_of_its_size() {
        assert_eq!(filled(Some(20), 20, 7), vec![20]);
        assert_eq!(
            filled(Some(200 << 10), 200 << 10, 16 << 10),
            vec![200 << 10]
        );
    }

    #[test]
    fn a_body_of_unknown_length_fills_doubling_blocks() {
        let k = 1 << 10;
        assert_eq!(filled(None, 100 * k, 4 * k), vec![16 * k, 32 * k, 52 * k]);
        assert_eq!(filled(None, 10, 10), vec![10]);
    }

    #[test]
    fn a_body_longer_or_shorter_than_announced_keeps_every_byte() {
        let k = 1 << 10;
        // filled() checks the bytes; the body ends in one mapping either way.
        assert_eq!(filled(Some(300 * k as u64), 310 * k, 64 * k), vec![310 * k]);
        assert_eq!(filled(Some(300 * k as u64), 290 * k, 64 * k), vec![290 * k]);
        assert_eq!(filled(Some(300 * k as u64), 10 * k, 4 * k), vec![10 * k]);
    }

    #[test]
    fn a_default_fill_opens_blocks_like_one_of_unknown_length() {
        let mut fill = BodyFill::default();
        fill.extend(&[7u8; 100]);
        assert_eq!(fill.finish().blocks()[0].len(), 100);
    }

    #[test]
    fn a_large_body_ends_in_one_mapping_of_its_length() {
        let k = 1 << 10;
        assert_eq!(filled(Some(1 << 20), 1 << 20, 16 * k), vec![1 << 20]);
        assert_eq!(
            filled(Some(3 << 20), (3 << 20) - 5, 64 * k),
            vec![(3 << 20) - 5]
        );
        assert_eq!(filled(None, 5 << 20, 64 * k), vec![5 << 20]);
        assert_eq!(filled(None, 300 * k, 7 * k), vec![300 * k]);
    }

    fn entry(size: usize, vary: &[(&str, &str)]) -> Entry {
        let mut request = HeaderMap::new();
        for (k, v) in vary {
            request.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let fields: Vec<HeaderName> = vary
            .iter()
            .map(|(k, _)| HeaderName::from_bytes(k.as_bytes()).unwrap())
            .collect();
        Entry {
            stored: Stored {
                status: http::StatusCode::OK,
                headers: HeaderMap::new(),
                request_time: SystemTime::now(),
                response_time: SystemTime::now(),
            },
            body: StoredBody::from_bytes(Bytes::from(vec![b'x'; size])),
            vary_values: vary_values(&fields, &request),
            vary: fields,
        }
    }

    #[test]
    fn variants_live_side_by_side() {
        let store = Store::new(1 << 20, 256 << 10);
        store.insert("k", entry(10, &[("accept-language", "en")]), 0);
        store.insert("k", entry(20, &[("accept-language", "fr")]), 0);
        store.insert("k", entry(30, &[("accept-language", "en")]), 0);
        let mut fr = HeaderMap::new();
        fr.insert("accept-language", "fr".parse().unwrap());
        let mut en = HeaderMap::new();
        en.insert("accept-language", "en".parse().unwrap());
        assert_eq!(store.lookup("k", &fr).unwrap().body.len(), 20);
        assert_eq!(store.lookup("k", &en).unwrap().body.len(), 30);
        assert!(store.lookup("k", &HeaderMap::new()).is_none());
    }

    #[test]
    fn a_changed_vary_replaces_the_older_variants() {
        let store = Store::new(1 << 20, 256 << 10);
        store.insert("k", entry(10, &[]), 0);
        store.insert("k", entry(20, &[("accept-language", "en")]), 0);
        let mut de = HeaderMap::new();
        de.insert("accept-language", "de".parse().unwrap());
        // The response without Vary no longer answers every request.
        assert!(store.lookup("k", &de).is_none());
        assert!(store.lookup("k", &HeaderMap::new()).is_none());
        store.insert("k", entry(30, &[]), 0);
        assert_eq!(store.lookup("k", &de).unwrap().body.len(), 30);
    }

    #[test]
    fn weight_stays_under_capacity() {
        let store = Store::new(1 << 20, 256 << 10);
        for i in 0..200 {
            store.insert(&format!("key-{i}"), entry(16 << 10, &[]), 0);
        }
        assert!(store.weight() <= 1 << 20, "{}", store.weight());
        assert!(store.evictions() > 0);
    }

    #[test]
    fn shards_leave_room_for_the_largest_entry() {
        assert_eq!(shards_for(256 << 20, 16 << 20), 8);
        assert_eq!(shards_for(2 << 30, 16 << 20), 16);
        assert_eq!(shards_for(16 << 20, 16 << 20), 1);
        assert_eq!(shards_for(1 << 20, 0), 16);
        for (capacity, largest) in [(256u64 << 20, 16u64 << 20), (64 << 20, 8 << 20)] {
            assert!(Store::new(capacity, largest).max_entry() >= largest);
        }
    }

    #[test]
    fn purge_and_ban() {
        let store = Store::new(1 << 20, 256 << 10);
        for path in ["a.com/x/1", "a.com/x/2", "a.com/y/1", "b.com/x/1"] {
            store.insert(path, entry(1, &[]), 0);
        }
        assert!(store.purge("a.com/y/1"));
        assert!(!store.purge("a.com/y/1"));
        assert_eq!(store.ban("a.com/x/"), 2);
        assert_eq!(store.len(), 1);
    }

    #[test]
    fn a_response_fetched_before_an_invalidation_is_not_stored_after_it() {
        let store = Store::new(1 << 20, 256 << 10);
        let fetched_at = store.generation();
        store.purge("a.com/x");
        store.ban("b.com/");
        assert!(!store.insert("a.com/x", entry(1, &[]), fetched_at));
        assert!(!store.insert("b.com/y", entry(1, &[]), fetched_at));
        assert!(store.insert("a.com/y", entry(1, &[]), fetched_at));
        assert!(store.insert("a.com/x", entry(1, &[]), store.generation()));
        assert_eq!(store.len(), 2);
    }
}
