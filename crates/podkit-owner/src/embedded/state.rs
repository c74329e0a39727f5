//! The embedded store's state and the semantics of etcd's v3 KV and Lease requests over
//! it, as pure logic: no I/O and no clock (callers pass `now`).
//!
//! Every write returns a [`Change`]: the revision it made, its events (each with the
//! previous value) and the leases it granted or revoked. The caller persists the change
//! and only then answers; if persisting fails it calls [`State::undo`], so memory never
//! holds what the disk does not.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::time::{Duration, Instant};

use etcd_client::proto::{
    PbCompare, PbDeleteResponse, PbEvent, PbKeyValue, PbPutResponse, PbRangeResponse, PbResponseOp,
    PbTargetUnion, PbTxnOpRequest, PbTxnOpResponse, PbTxnResponse,
};
use etcd_client::proto::{PbDeleteRequest, PbPutRequest, PbRangeRequest, PbTxnRequest};

/// Event types as etcd numbers them.
pub const EVENT_PUT: i32 = 0;
pub const EVENT_DELETE: i32 = 1;

/// The most operations one transaction may hold (etcd's default `--max-txn-ops`).
pub const MAX_TXN_OPS: usize = 128;

/// The longest TTL a lease may have (etcd's `MaxLeaseTTL`).
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A request the store refuses; the messages are etcd's, which clients match on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    #[error("etcdserver: key not found")]
    KeyNotFound,
    #[error("etcdserver: value is provided")]
    ValueProvided,
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
}

/// A lease as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The TTL it was granted, in seconds; each keep-alive renews it to this.
    pub ttl: i64,
    pub expires: Instant,
    /// The keys attached to it, deleted when it ends.
    pub keys: BTreeSet<Vec<u8>>,
}

/// What one write did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Change {
    /// The store's revision after the write.
    pub revision: i64,
    /// Key events, all at `revision`, each with its `prev_kv` filled.
    pub events: Vec<PbEvent>,
    /// Leases created: id and TTL.
    pub granted: Vec<(i64, i64)>,
    /// Leases ended: id, TTL and expiry, enough to restore them on undo.
    pub revoked: Vec<(i64, i64, Instant)>,
}

impl Change {
    /// Whether the write changed anything that must be persisted.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.granted.is_empty() && self.revoked.is_empty()
    }
}

/// Keys, leases and the revision.
#[derive(Debug, Default)]
pub struct State {
    keys: BTreeMap<Vec<u8>, PbKeyValue>,
    leases: BTreeMap<i64, Lease>,
    revision: i64,
}

/// A key range as bounds.
pub type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The bounds of etcd's `key`/`range_end` pair: one key when `range_end` is empty, every
/// key from `key` on when it is `"\0"`, else `[key, range_end)`.
pub fn key_bounds(key: &[u8], range_end: &[u8]) -> Bounds {
    match range_end {
        [] => (Bound::Included(key.to_vec()), Bound::Included(key.to_vec())),
        [0] => (Bound::Included(key.to_vec()), Bound::Unbounded),
        end => (Bound::Included(key.to_vec()), Bound::Excluded(end.to_vec())),
    }
}

/// Whether `bounds` can hold no key (`range_end` at or before `key`).
pub fn bounds_are_empty(bounds: &Bounds) -> bool {
    match bounds {
        (Bound::Included(start), Bound::Excluded(end)) => end <= start,
        _ => false,
    }
}

/// Whether `key` lies within `bounds`.
pub fn in_bounds(key: &[u8], bounds: &Bounds) -> bool {
    let after_start = match &bounds.0 {
        Bound::Included(s) => key >= s.as_slice(),
        _ => true,
    };
    let before_end = match &bounds.1 {
        Bound::Included(e) => key <= e.as_slice(),
        Bound::Excluded(e) => key < e.as_slice(),
        Bound::Unbounded => true,
    };
    after_start && before_end
}

impl State {
    /// A state loaded from disk: keys (leases attached from their `lease` field), leases
    /// with their TTLs, all expiring one full TTL after `now` as etcd's do after a
    /// restart, and the revision.
    pub fn restore(
        keys: impl IntoIterator<Item = PbKeyValue>,
        leases: impl IntoIterator<Item = (i64, i64)>,
        revision: i64,
        now: Instant,
    ) -> State {
        let mut state = State {
            revision,
            ..State::default()
        };
        for (id, ttl) in leases {
            state.leases.insert(
                id,
                Lease {
                    ttl,
                    expires: now + Duration::from_secs(ttl.max(0) as u64),
                    keys: BTreeSet::new(),
                },
            );
        }
        for kv in keys {
            if let Some(lease) = state.leases.get_mut(&kv.lease) {
                lease.keys.insert(kv.key.clone());
            }
            state.keys.insert(kv.key.clone(), kv);
        }
        state
    }

    /// The current revision.
    pub fn revision(&self) -> i64 {
        self.revision
    }

    /// How many keys there are.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// How many leases there are.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// The keys within `bounds`, in key order.
    pub fn keys_in<'a>(&'a self, bounds: &Bounds) -> impl Iterator<Item = &'a PbKeyValue> + 'a {
        self.range_iter(bounds)
    }

    fn range_iter<'a>(&'a self, bounds: &Bounds) -> Box<dyn Iterator<Item = &'a PbKeyValue> + 'a> {
        if bounds_are_empty(bounds) {
            return Box::new(std::iter::empty());
        }
        Box::new(self.keys.range(bounds.clone()).map(|(_, kv)| kv))
    }

    /// Serves a Range request at the current revision; inside the state alone an older
    /// revision is reported compacted (see `Core::range` for reads in the past).
    pub fn range(&self, req: &PbRangeRequest) -> Result<PbRangeResponse, RequestError> {
        if req.key.is_empty() {
            return Err(RequestError::EmptyKey);
        }
        if req.revision > self.revision {
            return Err(RequestError::FutureRevision);
        }
        if req.revision > 0 && req.revision < self.revision {
            return Err(RequestError::Compacted);
        }
        let bounds = key_bounds(&req.key, &req.range_end);
        Ok(shape_range(
            self.range_iter(&bounds).cloned().collect(),
            req,
        ))
    }

    /// Runs `write` as one revision: the revision moves on only if it produced events.
    /// On error, everything it did is undone.
    fn write<T>(
        &mut self,
        write: impl FnOnce(&mut State, i64, &mut Change) -> Result<T, RequestError>,
    ) -> Result<(T, Change), RequestError> {
        let next = self.revision + 1;
        let mut change = Change {
            revision: next,
            ..Change::default()
        };
        match write(self, next, &mut change) {
            Ok(answer) => {
                if change.events.is_empty() {
                    change.revision = self.revision;
                } else {
                    self.revision = next;
                }
                Ok((answer, change))
            }
            Err(e) => {
                let before = self.revision;
                self.undo(&change);
                self.revision = before;
                Err(e)
            }
        }
    }

    /// Puts back what `change` did (it must be the last change applied).
    pub fn undo(&mut self, change: &Change) {
        for event in change.events.iter().rev() {
            let key = event
                .kv
                .as_ref()
                .map(|kv| kv.key.clone())
                .unwrap_or_default();
            if let Some(now) = self.keys.remove(&key) {
                self.detach(&now);
            }
            if let Some(prev) = &event.prev_kv {
                self.attach(prev);
                self.keys.insert(key, prev.clone());
            }
        }
        for (id, _) in &change.granted {
            self.leases.remove(id);
        }
        for (id, ttl, expires) in &change.revoked {
            self.leases.insert(
                *id,
                Lease {
                    ttl: *ttl,
                    expires: *expires,
                    keys: BTreeSet::new(),
                },
            );
        }
        // Keys restored above may belong to the restored leases.
        for kv in self.keys.values() {
            if let Some(lease) = self.leases.get_mut(&kv.lease) {
                lease.keys.insert(kv.key.clone());
            }
        }
        if !change.events.is_empty() {
            self.revision = change.revision - 1;
        }
    }

    fn attach(&mut self, kv: &PbKeyValue) {
        if let Some(lease) = self.leases.get_mut(&kv.lease) {
            lease.keys.insert(kv.key.clone());
        }
    }

    fn detach(&mut self, kv: &PbKeyValue) {
        if let Some(lease) = self.leases.get_mut(&kv.lease) {
            lease.keys.remove(&kv.key);
        }
    }

    /// Serves a Put request.
    pub fn put(&mut self, req: &PbPutRequest) -> Result<(PbPutResponse, Change), RequestError> {
        self.write(|state, revision, change| state.apply_put(req, revision, change))
    }

    fn apply_put(
        &mut self,
        req: &PbPutRequest,
        revision: i64,
        change: &mut Change,
    ) -> Result<PbPutResponse, RequestError> {
        check_put(req)?;
        if req.lease != 0 && !self.leases.contains_key(&req.lease) {
            return Err(RequestError::LeaseNotFound);
        }
        let prev = self.keys.get(&req.key).cloned();
        if (req.ignore_value || req.ignore_lease) && prev.is_none() {
            return Err(RequestError::KeyNotFound);
        }
        let lease = if req.ignore_lease {
            prev.as_ref().map_or(0, |p| p.lease)
        } else {
            req.lease
        };
        let value = if req.ignore_value {
            prev.as_ref().map(|p| p.value.clone()).unwrap_or_default()
        } else {
            req.value.clone()
        };
        let kv = PbKeyValue {
            key: req.key.clone(),
            create_revision: prev.as_ref().map_or(revision, |p| p.create_revision),
            mod_revision: revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            value,
            lease,
        };
        if let Some(p) = &prev {
            self.detach(p);
        }
        self.attach(&kv);
        self.keys.insert(kv.key.clone(), kv.clone());
        change.events.push(PbEvent {
            r#type: EVENT_PUT,
            kv: Some(kv),
            prev_kv: prev.clone(),
        });
        Ok(PbPutResponse {
            header: None,
            prev_kv: if req.prev_kv { prev } else { None },
        })
    }

    /// Serves a DeleteRange request.
    pub fn delete_range(
        &mut self,
        req: &PbDeleteRequest,
    ) -> Result<(PbDeleteResponse, Change), RequestError> {
        self.write(|state, revision, change| state.apply_delete(req, revision, change))
    }

    fn apply_delete(
        &mut self,
        req: &PbDeleteRequest,
        revision: i64,
        change: &mut Change,
    ) -> Result<PbDeleteResponse, RequestError> {
        if req.key.is_empty() {
            return Err(RequestError::EmptyKey);
        }
        let bounds = key_bounds(&req.key, &req.range_end);
        let doomed: Vec<Vec<u8>> = self.range_iter(&bounds).map(|kv| kv.key.clone()).collect();
        let mut prev_kvs = Vec::new();
        for key in &doomed {
            if let Some(prev) = self.remove_key(key, revision, change) {
                if req.prev_kv {
                    prev_kvs.push(prev);
                }
            }
        }
        Ok(PbDeleteResponse {
            header: None,
            deleted: doomed.len() as i64,
            prev_kvs,
        })
    }

    fn remove_key(&mut self, key: &[u8], revision: i64, change: &mut Change) -> Option<PbKeyValue> {
        let prev = self.keys.remove(key)?;
        self.detach(&prev);
        change.events.push(PbEvent {
            r#type: EVENT_DELETE,
            kv: Some(PbKeyValue {
                key: key.to_vec(),
                mod_revision: revision,
                ..PbKeyValue::default()
            }),
            prev_kv: Some(prev.clone()),
        });
        Some(prev)
    }

    /// Serves a Txn request: compares, then the success or failure branch, in one
    /// revision.
    pub fn txn(&mut self, req: &PbTxnRequest) -> Result<(PbTxnResponse, Change), RequestError> {
        check_txn(req)?;
        self.write(|state, revision, change| state.apply_txn(req, revision, change))
    }

    fn apply_txn(
        &mut self,
        req: &PbTxnRequest,
        revision: i64,
        change: &mut Change,
    ) -> Result<PbTxnResponse, RequestError> {
        let succeeded = req.compare.iter().all(|c| self.compare(c));
        let ops = if succeeded {
            &req.success
        } else {
            &req.failure
        };
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            let response = match &op.request {
                Some(PbTxnOpRequest::RequestRange(r)) => {
                    PbTxnOpResponse::ResponseRange(self.range(r)?)
                }
                Some(PbTxnOpRequest::RequestPut(r)) => {
                    PbTxnOpResponse::ResponsePut(self.apply_put(r, revision, change)?)
                }
                Some(PbTxnOpRequest::RequestDeleteRange(r)) => {
                    PbTxnOpResponse::ResponseDeleteRange(self.apply_delete(r, revision, change)?)
                }
                Some(PbTxnOpRequest::RequestTxn(r)) => {
                    PbTxnOpResponse::ResponseTxn(self.apply_txn(r, revision, change)?)
                }
                None => continue,
            };
            responses.push(PbResponseOp {
                response: Some(response),
            });
        }
        Ok(PbTxnResponse {
            header: None,
            succeeded,
            responses,
        })
    }

    /// One compare, as etcd evaluates it: every key in its range must satisfy it; a
    /// range with no key compares as a key with zero revisions and version, except that a
    /// value compare on a missing key always fails.
    fn compare(&self, c: &PbCompare) -> bool {
        let bounds = key_bounds(&c.key, &c.range_end);
        let mut kvs = self.range_iter(&bounds).peekable();
        if kvs.peek().is_none() {
            if c.target == 3 {
                return false;
            }
            return compare_one(c, &PbKeyValue::default());
        }
        kvs.all(|kv| compare_one(c, kv))
    }

    /// Grants a lease (`id` 0 picks one with `pick_id`).
    pub fn grant(
        &mut self,
        id: i64,
        ttl: i64,
        now: Instant,
        mut pick_id: impl FnMut() -> i64,
    ) -> Result<((i64, i64), Change), RequestError> {
        if ttl > MAX_LEASE_TTL {
            return Err(RequestError::LeaseTtlTooLarge);
        }
        let id = if id == 0 {
            loop {
                let candidate = pick_id();
                if candidate > 0 && !self.leases.contains_key(&candidate) {
                    break candidate;
                }
            }
        } else if self.leases.contains_key(&id) {
            return Err(RequestError::LeaseExists);
        } else {
            id
        };
        let ttl = ttl.max(1);
        self.leases.insert(
            id,
            Lease {
                ttl,
                expires: now + Duration::from_secs(ttl as u64),
                keys: BTreeSet::new(),
            },
        );
        let change = Change {
            revision: self.revision,
            granted: vec![(id, ttl)],
            ..Change::default()
        };
        Ok(((id, ttl), change))
    }

    /// Ends a lease and deletes its keys, in one revision.
    pub fn revoke(&mut self, id: i64) -> Result<Change, RequestError> {
        if !self.leases.contains_key(&id) {
            return Err(RequestError::LeaseNotFound);
        }
        let ((), change) = self.write(|state, revision, change| {
            let lease = state.leases.remove(&id).expect("checked above");
            for key in &lease.keys {
                state.remove_key(key, revision, change);
            }
            change.revoked.push((id, lease.ttl, lease.expires));
            Ok(())
        })?;
        Ok(change)
    }

    /// Renews a lease to its full TTL; `None` when it does not exist or has expired.
    pub fn keep_alive(&mut self, id: i64, now: Instant) -> Option<i64> {
        // Expired but not yet revoked: as good as gone.
        let lease = self.leases.get_mut(&id).filter(|l| l.expires > now)?;
        lease.expires = now + Duration::from_secs(lease.ttl as u64);
        Some(lease.ttl)
    }

    /// A lease's remaining seconds, granted TTL and keys; `None` when it does not exist.
    pub fn time_to_live(&self, id: i64, now: Instant) -> Option<(i64, i64, Vec<Vec<u8>>)> {
        let lease = self.leases.get(&id)?;
        let remaining = lease.expires.saturating_duration_since(now).as_secs() as i64;
        Some((remaining, lease.ttl, lease.keys.iter().cloned().collect()))
    }

    /// Every lease id.
    pub fn lease_ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Leases whose TTL has passed unrenewed at `now`.
    pub fn expired(&self, now: Instant) -> Vec<i64> {
        self.leases
            .iter()
            .filter(|(_, l)| l.expires <= now)
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Shapes the keys of a range (all of them, in key order) as the request asks: filters on
/// revisions, sort, limit, keys or count only. `count` is taken before the filters, and
/// `more` says whether the limit cut the list, as etcd does.
pub fn shape_range(all: Vec<PbKeyValue>, req: &PbRangeRequest) -> PbRangeResponse {
    let count = all.len() as i64;
    if req.count_only {
        return PbRangeResponse {
            header: None,
            kvs: Vec::new(),
            more: false,
            count,
        };
    }
    let keep = |kv: &PbKeyValue| {
        (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
    };
    let mut kvs: Vec<PbKeyValue> = all.into_iter().filter(keep).collect();
    sort(&mut kvs, req.sort_order, req.sort_target);
    let more = req.limit > 0 && kvs.len() > req.limit as usize;
    if more {
        kvs.truncate(req.limit as usize);
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value.clear();
        }
    }
    PbRangeResponse {
        header: None,
        more,
        count,
        kvs,
    }
}

fn compare_one(c: &PbCompare, kv: &PbKeyValue) -> bool {
    use std::cmp::Ordering;
    // etcd's CompareTarget: VERSION, CREATE, MOD, VALUE, LEASE. A union of another kind
    // than the target compares as zero.
    let number = |n: Option<i64>| n.unwrap_or(0);
    let ordering = match (c.target, &c.target_union) {
        (0, u) => kv.version.cmp(&number(match u {
            Some(PbTargetUnion::Version(v)) => Some(*v),
            _ => None,
        })),
        (1, u) => kv.create_revision.cmp(&number(match u {
            Some(PbTargetUnion::CreateRevision(v)) => Some(*v),
            _ => None,
        })),
        (2, u) => kv.mod_revision.cmp(&number(match u {
            Some(PbTargetUnion::ModRevision(v)) => Some(*v),
            _ => None,
        })),
        (3, u) => match u {
            Some(PbTargetUnion::Value(v)) => kv.value.as_slice().cmp(v.as_slice()),
            _ => kv.value.as_slice().cmp(&[][..]),
        },
        (4, u) => kv.lease.cmp(&number(match u {
            Some(PbTargetUnion::Lease(v)) => Some(*v),
            _ => None,
        })),
        _ => return false,
    };
    // etcd's CompareResult: EQUAL, GREATER, LESS, NOT_EQUAL.
    match c.result {
        0 => ordering == Ordering::Equal,
        1 => ordering == Ordering::Greater,
        2 => ordering == Ordering::Less,
        3 => ordering != Ordering::Equal,
        _ => true,
    }
}

/// Sorts as etcd does: a target other than the key with no order means ascending.
fn sort(kvs: &mut [PbKeyValue], order: i32, target: i32) {
    // etcd's SortOrder: NONE, ASCEND, DESCEND; SortTarget: KEY, VERSION, CREATE, MOD, VALUE.
    let order = if order == 0 && target != 0 { 1 } else { order };
    if order == 0 || (order == 1 && target == 0) {
        return;
    }
    kvs.sort_by(|a, b| {
        let by = match target {
            1 => a.version.cmp(&b.version),
            2 => a.create_revision.cmp(&b.create_revision),
            3 => a.mod_revision.cmp(&b.mod_revision),
            4 => a.value.cmp(&b.value),
            _ => a.key.cmp(&b.key),
        };
        if order == 2 {
            by.reverse()
        } else {
            by
        }
    });
}

/// Checks a transaction before anything runs, as etcd does: both branches, whichever
/// runs — the number of operations, that every operation names a key and is well formed,
/// and that no key is written twice (see [`branch_writes`]).
fn check_txn(req: &PbTxnRequest) -> Result<(), RequestError> {
    check_ops(req, MAX_TXN_OPS)?;
    branch_writes(&req.success)?;
    branch_writes(&req.failure)?;
    Ok(())
}

/// What is wrong with a Put on its face, before the state is looked at.
fn check_put(req: &PbPutRequest) -> Result<(), RequestError> {
    if req.key.is_empty() {
        return Err(RequestError::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(RequestError::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(RequestError::LeaseProvided);
    }
    Ok(())
}

/// Validates one transaction's compares and operations; nested transactions share the
/// budget of `max_ops`.
fn check_ops(req: &PbTxnRequest, max_ops: usize) -> Result<(), RequestError> {
    if req.compare.len() > max_ops || req.success.len() > max_ops || req.failure.len() > max_ops {
        return Err(RequestError::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(RequestError::EmptyKey);
    }
    for branch in [&req.success, &req.failure] {
        for op in branch {
            match &op.request {
                None => return Err(RequestError::KeyNotFound),
                Some(PbTxnOpRequest::RequestRange(r)) if r.key.is_empty() => {
                    return Err(RequestError::EmptyKey)
                }
                Some(PbTxnOpRequest::RequestDeleteRange(d)) if d.key.is_empty() => {
                    return Err(RequestError::EmptyKey)
                }
                Some(PbTxnOpRequest::RequestPut(p)) => check_put(p)?,
                Some(PbTxnOpRequest::RequestTxn(t)) => {
                    check_ops(t, max_ops.saturating_sub(branch.len()))?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// The keys one branch puts and the ranges it deletes, refusing the branch if it puts a
/// key twice or puts a key inside a range it deletes. Of a nested transaction only one
/// branch runs: its two branches may put the same key, but neither may repeat a key of
/// the enclosing branch or fall in a range the enclosing branch deletes.
fn branch_writes(
    ops: &[etcd_client::proto::PbTxnRequestOp],
) -> Result<(BTreeSet<Vec<u8>>, Vec<Bounds>), RequestError> {
    let mut deletes: Vec<Bounds> = ops
        .iter()
        .filter_map(|op| match &op.request {
            Some(PbTxnOpRequest::RequestDeleteRange(d)) => Some(key_bounds(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let deleted = |deletes: &[Bounds], key: &[u8]| deletes.iter().any(|b| in_bounds(key, b));
    let mut puts = BTreeSet::new();
    for op in ops {
        let Some(PbTxnOpRequest::RequestTxn(t)) = &op.request else {
            continue;
        };
        let (puts_then, deletes_then) = branch_writes(&t.success)?;
        let (puts_else, deletes_else) = branch_writes(&t.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&deletes, key) {
                return Err(RequestError::DuplicateKey);
            }
        }
        for key in &puts_else {
            let repeats_ours = puts.contains(key) && !puts_then.contains(key);
            if repeats_ours || deleted(&deletes, key) {
                return Err(RequestError::DuplicateKey);
            }
        }
        puts.extend(puts_then);
        puts.extend(puts_else);
        deletes.extend(deletes_then);
        deletes.extend(deletes_else);
    }
    for op in ops {
        if let Some(PbTxnOpRequest::RequestPut(p)) = &op.request {
            if deleted(&deletes, &p.key) || !puts.insert(p.key.clone()) {
                return Err(RequestError::DuplicateKey);
            }
        }
    }
    Ok((puts, deletes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use etcd_client::proto::PbTxnRequestOp;

    fn put(key: &str, value: &str) -> PbPutRequest {
        PbPutRequest {
            key: key.into(),
            value: value.into(),
            ..PbPutRequest::default()
        }
    }

    fn get(state: &State, key: &str, end: &str) -> PbRangeResponse {
        state
            .range(&PbRangeRequest {
                key: key.into(),
                range_end: end.into(),
                ..PbRangeRequest::default()
            })
            .unwrap()
    }

    fn create_if_absent(key: &str, value: &str) -> PbTxnRequest {
        PbTxnRequest {
            compare: vec![PbCompare {
                result: 0,
                target: 1,
                key: key.into(),
                range_end: vec![],
                target_union: Some(PbTargetUnion::CreateRevision(0)),
            }],
            success: vec![PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestPut(put(key, value))),
            }],
            failure: vec![PbTxnRequestOp {
                request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
                    key: key.into(),
                    ..PbRangeRequest::default()
                })),
            }],
        }
    }

    #[test]
    fn revisions_and_versions_move_as_etcds_do() {
        let mut s = State::default();
        let (_, c1) = s.put(&put("a", "1")).unwrap();
        let (_, c2) = s.put(&put("a", "2")).unwrap();
        assert_eq!((c1.revision, c2.revision), (1, 2));
        let kv = &get(&s, "a", "").kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (1, 2, 2));
        assert_eq!(c2.events[0].prev_kv.as_ref().unwrap().value, b"1");
        // Deleting nothing makes no revision.
        let (r, c) = s
            .delete_range(&PbDeleteRequest {
                key: "zz".into(),
                ..PbDeleteRequest::default()
            })
            .unwrap();
        assert_eq!((r.deleted, c.revision, c.events.len()), (0, 2, 0));
        s.put(&put("b", "x")).unwrap();
        s.put(&put("c", "y")).unwrap();
        assert_eq!(get(&s, "a", "c").kvs.len(), 2);
        assert_eq!(get(&s, "a", "\0").kvs.len(), 3);
        let (r, c) = s
            .delete_range(&PbDeleteRequest {
                key: "a".into(),
                range_end: "c".into(),
                prev_kv: true,
            })
            .unwrap();
        assert_eq!((r.deleted, r.prev_kvs.len(), c.revision), (2, 2, 5));
        assert!(c.events.iter().all(|e| e.r#type == EVENT_DELETE));
    }

    #[test]
    fn a_transaction_creates_once_and_sees_its_own_writes() {
        let mut s = State::default();
        let (r, c) = s.txn(&create_if_absent("lock/1", "me")).unwrap();
        assert!(r.succeeded);
        assert_eq!(c.revision, 1);
        let (r, c) = s.txn(&create_if_absent("lock/1", "you")).unwrap();
        assert!(!r.succeeded);
        assert_eq!(c.revision, 1, "a read-only branch makes no revision");
        let Some(PbTxnOpResponse::ResponseRange(got)) = &r.responses[0].response else {
            panic!("{r:?}")
        };
        assert_eq!(got.kvs[0].value, b"me");
        // Put then read in one transaction: the read sees the put.
        let mut txn = create_if_absent("lock/2", "two");
        txn.success.push(PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestRange(PbRangeRequest {
                key: "lock/".into(),
                range_end: "lock0".into(),
                sort_order: 2,
                sort_target: 2,
                limit: 1,
                ..PbRangeRequest::default()
            })),
        });
        let (r, _) = s.txn(&txn).unwrap();
        let Some(PbTxnOpResponse::ResponseRange(got)) = &r.responses[1].response else {
            panic!("{r:?}")
        };
        assert_eq!(
            (got.kvs[0].key.as_slice(), got.count, got.more),
            (&b"lock/2"[..], 2, true)
        );
    }

    #[test]
    fn a_value_compare_on_a_missing_key_fails() {
        let s = State::default();
        let c = PbCompare {
            result: 3,
            target: 3,
            key: "nope".into(),
            range_end: vec![],
            target_union: Some(PbTargetUnion::Value(b"x".to_vec())),
        };
        assert!(!s.compare(&c));
    }

    #[test]
    fn duplicate_keys_in_a_branch_are_refused() {
        let mut s = State::default();
        let mut txn = create_if_absent("k", "1");
        txn.success.push(PbTxnRequestOp {
            request: Some(PbTxnOpRequest::RequestPut(put("k", "2"))),
        });
        assert_eq!(s.txn(&txn).unwrap_err(), RequestError::DuplicateKey);
        assert_eq!(s.revision(), 0);
    }

    #[test]
    fn a_nested_transactions_branches_may_write_the_same_key() {
        let op = |r| PbTxnRequestOp { request: Some(r) };
        let nested = |success, failure| {
            op(PbTxnOpRequest::RequestTxn(PbTxnRequest {
                compare: vec![],
                success,
                failure,
            }))
        };
        let delete_k = || {
            op(PbTxnOpRequest::RequestDeleteRange(PbDeleteRequest {
                key: "k".into(),
                ..PbDeleteRequest::default()
            }))
        };
        let put_k = || op(PbTxnOpRequest::RequestPut(put("k", "v")));
        let mut s = State::default();
        let alternatives = PbTxnRequest {
            compare: vec![],
            success: vec![nested(vec![delete_k()], vec![put_k()])],
            failure: vec![],
        };
        assert!(s.txn(&alternatives).is_ok());
        let both = PbTxnRequest {
            compare: vec![],
            success: vec![put_k(), nested(vec![put_k()], vec![])],
            failure: vec![],
        };
        assert_eq!(s.txn(&both).unwrap_err(), RequestError::DuplicateKey);
        let empty_op = PbTxnRequest {
            compare: vec![],
            success: vec![],
            failure: vec![PbTxnRequestOp { request: None }],
        };
        assert_eq!(s.txn(&empty_op).unwrap_err(), RequestError::KeyNotFound);
    }

    #[test]
    fn a_failed_write_is_undone_whole() {
        let mut s = State::default();
        s.put(&put("a", "1")).unwrap();
        let txn = PbTxnRequest {
            compare: vec![],
            success: vec![
                PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestPut(put("a", "2"))),
                },
                PbTxnRequestOp {
                    request: Some(PbTxnOpRequest::RequestPut(PbPutRequest {
                        lease: 77,
                        ..put("b", "x")
                    })),
                },
            ],
            failure: vec![],
        };
        assert_eq!(s.txn(&txn).unwrap_err(), RequestError::LeaseNotFound);
        assert_eq!(s.revision(), 1);
        assert_eq!(get(&s, "a", "").kvs[0].value, b"1");
        assert_eq!(get(&s, "b", "").kvs.len(), 0);
    }

    #[test]
    fn leases_delete_their_keys_and_undo_restores_them() {
        let now = Instant::now();
        let mut s = State::default();
        let ((id, ttl), _) = s.grant(0, 2, now, || 42).unwrap();
        assert_eq!((id, ttl), (42, 2));
        s.put(&PbPutRequest {
            lease: id,
            ..put("held", "me")
        })
        .unwrap();
        assert_eq!(s.time_to_live(id, now).unwrap().2, vec![b"held".to_vec()]);
        assert!(s.expired(now + Duration::from_secs(1)).is_empty());
        assert_eq!(s.expired(now + Duration::from_secs(2)), vec![id]);
        assert_eq!(s.keep_alive(id, now + Duration::from_secs(1)), Some(2));
        assert!(s.expired(now + Duration::from_secs(2)).is_empty());
        let change = s.revoke(id).unwrap();
        assert_eq!(change.events.len(), 1);
        assert_eq!(get(&s, "held", "").kvs.len(), 0);
        s.undo(&change);
        assert_eq!(get(&s, "held", "").kvs.len(), 1);
        assert_eq!(s.time_to_live(id, now).unwrap().2.len(), 1);
        assert_eq!(s.revoke(7).unwrap_err(), RequestError::LeaseNotFound);
    }

    #[test]
    fn restore_reattaches_keys_and_gives_leases_a_full_ttl() {
        let now = Instant::now();
        let kv = PbKeyValue {
            key: b"k".to_vec(),
            create_revision: 3,
            mod_revision: 3,
            version: 1,
            value: b"v".to_vec(),
            lease: 9,
        };
        let s = State::restore([kv], [(9, 5)], 3, now);
        let (remaining, granted, keys) = s.time_to_live(9, now).unwrap();
        assert_eq!((remaining, granted, keys.len()), (5, 5, 1));
        assert_eq!(s.revision(), 3);
    }

    #[test]
    fn sorting_filters_and_limits() {
        let mut s = State::default();
        for k in ["p/c", "p/a", "p/b"] {
            s.put(&put(k, k)).unwrap();
        }
        let oldest = s
            .range(&PbRangeRequest {
                key: "p/".into(),
                range_end: "p0".into(),
                sort_target: 2,
                limit: 1,
                ..PbRangeRequest::default()
            })
            .unwrap();
        assert_eq!(oldest.kvs[0].key, b"p/c");
        let before = s
            .range(&PbRangeRequest {
                key: "p/".into(),
                range_end: "p0".into(),
                sort_order: 2,
                sort_target: 2,
                max_create_revision: 2,
                limit: 1,
                ..PbRangeRequest::default()
            })
            .unwrap();
        assert_eq!(before.kvs[0].key, b"p/a");
        assert!(matches!(
            s.range(&PbRangeRequest {
                key: "p/".into(),
                revision: 1,
                ..PbRangeRequest::default()
            }),
            Err(RequestError::Compacted)
        ));
    }
}
