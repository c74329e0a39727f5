//! The chapter's primitives, each against both stores (a real 3-member etcd cluster and
//! `podkit store serve`): a stalled holder's unlock cannot release its successor's lock,
//! waiters are served in order by watching, try_lock, a lost lease is reported at once,
//! and the fence rejects a stale owner.

mod common;

use std::time::{Duration, Instant};

use common::stores::OwnerStore;
use podkit_owner::fence::Fence;
use podkit_owner::{election, lock, store::Store};

on_both_stores!(
    a_stalled_holders_unlock_cannot_release_the_next_holders_lock,
    waiters_are_served_in_order,
    the_fence_rejects_a_stale_leader,
    a_lease_revoked_behind_its_back_is_reported_lost_within_its_ttl,
    waiters_watch_instead_of_polling,
);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn a_stalled_holders_unlock_cannot_release_the_next_holders_lock(owner_store: OwnerStore) {
    let url = owner_store.url();
    runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let ttl = Duration::from_secs(1);
        let first = lock::lock(&store, "locks/l1", b"p1", ttl).await.unwrap();
        assert!(first.is_locked());
        // Process-1 stalls: no renewal; its lease expires and Process-2 gets the lock.
        first.lease.stop_renewing();
        let started = Instant::now();
        let second = lock::lock(&store, "locks/l1", b"p2", ttl).await.unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "it waited for the TTL"
        );
        assert!(second.token > first.token, "fencing tokens increase");
        assert!(!first.is_locked(), "0.75 x TTL has passed");
        // Process-1 wakes and unlocks: Process-2 still holds the lock.
        assert!(
            !first.unlock(&store).await.unwrap(),
            "its key was already gone"
        );
        let holder = lock::holder(&store, "locks/l1").await.unwrap().unwrap();
        assert_eq!(
            (holder.value.as_slice(), holder.create_revision),
            (&b"p2"[..], second.token)
        );
        // try_lock fails while it is held, succeeds after.
        assert!(lock::try_lock(&store, "locks/l1", b"p3", ttl)
            .await
            .unwrap()
            .is_none());
        second.unlock(&store).await.unwrap();
        let third = lock::try_lock(&store, "locks/l1", b"p3", ttl)
            .await
            .unwrap();
        assert!(third.is_some());
        third.unwrap().unlock(&store).await.unwrap();
    });
}

fn waiters_are_served_in_order(owner_store: OwnerStore) {
    let url = owner_store.url();
    runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let ttl = Duration::from_secs(5);
        let holder = lock::lock(&store, "locks/fair", b"h", ttl).await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..5 {
            let (store, tx) = (store.clone(), tx.clone());
            tokio::spawn(async move {
                let held = lock::lock(&store, "locks/fair", format!("w{n}").as_bytes(), ttl)
                    .await
                    .unwrap();
                tx.send(n).unwrap();
                held.unlock(&store).await.unwrap();
            });
            // Each waiter's key is created before the next one's.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        holder.unlock(&store).await.unwrap();
        let mut order = Vec::new();
        for _ in 0..5 {
            order.push(rx.recv().await.unwrap());
        }
        assert_eq!(order, [0, 1, 2, 3, 4]);
    });
}

fn the_fence_rejects_a_stale_leader(owner_store: OwnerStore) {
    let url = owner_store.url();
    runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let ttl = Duration::from_secs(1);
        let fence = Fence::new(store.clone(), "elections/shard2");
        let r1 = election::campaign(&store, "elections/shard2", "r1", ttl)
            .await
            .unwrap();
        assert!(fence.admit("r1", r1.token).await.unwrap());
        assert!(
            !fence.admit("r2", r1.token).await.unwrap(),
            "not the leader's id"
        );
        // R1 stalls past its TTL; R2 becomes leader.
        r1.lease.stop_renewing();
        let r2 = election::campaign(&store, "elections/shard2", "r2", ttl)
            .await
            .unwrap();
        assert_eq!(
            election::leader(&store, "elections/shard2").await.unwrap(),
            Some(election::Leader {
                id: "r2".into(),
                token: r2.token
            })
        );
        assert!(fence.admit("r2", r2.token).await.unwrap());
        // Everything R1 sends with its old token is refused.
        for _ in 0..10 {
            assert!(!fence.admit("r1", r1.token).await.unwrap());
        }
        assert!(!r1.lease.is_valid());
        election::resign(&store, r2).await.unwrap();
        assert_eq!(
            election::leader(&store, "elections/shard2").await.unwrap(),
            None
        );
    });
}

fn a_lease_revoked_behind_its_back_is_reported_lost_within_its_ttl(owner_store: OwnerStore) {
    let url = owner_store.url();
    runtime().block_on(async {
        let store = Store::connect(&url).await.unwrap();
        let held = lock::lock(&store, "locks/revoked", b"x", Duration::from_secs(2))
            .await
            .unwrap();
        let mut lost = held.lease.lost();
        assert!(!*lost.borrow());
        store.revoke(held.lease.id).await.unwrap();
        let started = Instant::now();
        tokio::time::timeout(Duration::from_secs(3), lost.wait_for(|l| *l))
            .await
            .expect("lost within the TTL")
            .unwrap();
        assert!(started.elapsed() <= Duration::from_secs(2));
        assert!(!held.is_locked());
    });
}

fn waiters_watch_instead_of_polling(owner_store: OwnerStore) {
    let url = owner_store.url();
    let runtime = runtime();
    let store = runtime.block_on(Store::connect(&url)).unwrap();
    let ttl = Duration::from_secs(10);
    let holder = runtime
        .block_on(lock::lock(&store, "locks/quiet", b"h", ttl))
        .unwrap();
    let waiters: Vec<_> = (0..5)
        .map(|n| {
            let store = store.clone();
            runtime.spawn(async move {
                let held = lock::lock(&store, "locks/quiet", format!("w{n}").as_bytes(), ttl)
                    .await
                    .unwrap();
                held.unlock(&store).await.unwrap();
            })
        })
        .collect();
    // Let every waiter reach its watch, then count requests over three seconds.
    std::thread::sleep(Duration::from_secs(1));
    let before = owner_store.reads_and_writes();
    assert!(
        before > 0.0,
        "the counters are there: the lock calls were counted"
    );
    std::thread::sleep(Duration::from_secs(3));
    let during = owner_store.reads_and_writes() - before;
    assert_eq!(during, 0.0, "Range/Txn requests while five waiters waited");
    runtime.block_on(async {
        holder.unlock(&store).await.unwrap();
        for w in waiters {
            w.await.unwrap();
        }
    });
}
