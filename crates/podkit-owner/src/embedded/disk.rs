//! The embedded store on disk: one redb database holding the keys, the leases, the
//! revision and a window of recent events (for watches that start in the past). Each
//! change is committed, fsynced, before the request that made it is answered.

use std::path::{Path, PathBuf};

use etcd_client::proto::{PbEvent, PbKeyValue, PbWatchResponse};
use prost::Message;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use super::state::Change;

const KEYS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("keys");
const LEASES: TableDefinition<i64, i64> = TableDefinition::new("leases");
const META: TableDefinition<&str, i64> = TableDefinition::new("meta");
/// Events by revision, each revision's list encoded as a WatchResponse.
const HISTORY: TableDefinition<i64, &[u8]> = TableDefinition::new("history");

const REVISION: &str = "revision";
const CLUSTER_ID: &str = "cluster_id";

/// The file inside `--data`.
pub const DB_FILE: &str = "store.redb";

/// Why the store's file could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct DiskError {
    path: PathBuf,
    source: redb::Error,
}

/// What the disk held at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub keys: Vec<PbKeyValue>,
    /// Lease ids and TTLs.
    pub leases: Vec<(i64, i64)>,
    pub revision: i64,
    /// Recent revisions' events, oldest first.
    pub history: Vec<(i64, Vec<PbEvent>)>,
    /// Chosen when the database was created; reported in every response header.
    pub cluster_id: u64,
}

/// The open database.
pub struct Disk {
    db: Database,
    path: PathBuf,
    /// How many revisions of events to keep.
    history: i64,
}

impl Disk {
    /// Opens (or creates) the database in `dir` and reads it whole.
    pub fn open(dir: &Path, history: i64) -> Result<(Disk, Loaded), DiskError> {
        let path = dir.join(DB_FILE);
        let error = |source: redb::Error| DiskError {
            path: path.clone(),
            source,
        };
        if let Err(e) = std::fs::create_dir_all(dir) {
            return Err(error(redb::Error::Io(e)));
        }
        let db = Database::create(&path).map_err(|e| error(e.into()))?;
        let disk = Disk {
            db,
            path: path.clone(),
            history,
        };
        let mut loaded = disk.load().map_err(error)?;
        disk.trim_history(&mut loaded).map_err(error)?;
        Ok((disk, loaded))
    }

    fn load(&self) -> Result<Loaded, redb::Error> {
        // Creating the tables first lets a new database be read like an old one.
        let txn = self.db.begin_write()?;
        {
            txn.open_table(KEYS)?;
            txn.open_table(LEASES)?;
            txn.open_table(HISTORY)?;
            let mut meta = txn.open_table(META)?;
            if meta.get(CLUSTER_ID)?.is_none() {
                meta.insert(CLUSTER_ID, fastrand::i64(1..i64::MAX))?;
            }
        }
        txn.commit()?;
        let txn = self.db.begin_read()?;
        let mut loaded = Loaded::default();
        for entry in txn.open_table(KEYS)?.iter()? {
            let (_, value) = entry?;
            loaded.keys.push(decode(value.value())?);
        }
        for entry in txn.open_table(LEASES)?.iter()? {
            let (id, ttl) = entry?;
            loaded.leases.push((id.value(), ttl.value()));
        }
        for entry in txn.open_table(HISTORY)?.iter()? {
            let (revision, events) = entry?;
            let events: PbWatchResponse = decode(events.value())?;
            loaded.history.push((revision.value(), events.events));
        }
        let meta = txn.open_table(META)?;
        loaded.revision = meta.get(REVISION)?.map_or(0, |v| v.value());
        loaded.cluster_id = meta.get(CLUSTER_ID)?.map_or(1, |v| v.value()) as u64;
        Ok(loaded)
    }

    /// Drops history beyond the window (kept from a run with a larger `--history`).
    fn trim_history(&self, loaded: &mut Loaded) -> Result<(), redb::Error> {
        let keep_from = loaded.revision - self.history;
        if loaded.history.first().is_none_or(|(r, _)| *r > keep_from) {
            return Ok(());
        }
        let txn = self.db.begin_write()?;
        txn.open_table(HISTORY)?
            .retain(|revision, _| revision > keep_from)?;
        txn.commit()?;
        loaded.history.retain(|(r, _)| *r > keep_from);
        Ok(())
    }

    /// The database file's size in bytes.
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Commits `change` durably.
    pub fn commit(&self, change: &Change) -> Result<(), DiskError> {
        self.write(change).map_err(|source| DiskError {
            path: self.path.clone(),
            source,
        })
    }

    fn write(&self, change: &Change) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut keys = txn.open_table(KEYS)?;
            for event in &change.events {
                let Some(kv) = &event.kv else { continue };
                if event.r#type == super::state::EVENT_PUT {
                    keys.insert(kv.key.as_slice(), kv.encode_to_vec().as_slice())?;
                } else {
                    keys.remove(kv.key.as_slice())?;
                }
            }
            let mut leases = txn.open_table(LEASES)?;
            for (id, ttl) in &change.granted {
                leases.insert(id, ttl)?;
            }
            for (id, _, _) in &change.revoked {
                leases.remove(id)?;
            }
            if !change.events.is_empty() {
                let mut history = txn.open_table(HISTORY)?;
                let events = PbWatchResponse {
                    events: change.events.clone(),
                    ..PbWatchResponse::default()
                };
                history.insert(change.revision, events.encode_to_vec().as_slice())?;
                // One revision in, one out: the window keeps its size.
                history.remove(change.revision - self.history)?;
                txn.open_table(META)?.insert(REVISION, change.revision)?;
            }
        }
        txn.commit()?;
        Ok(())
    }
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, redb::Error> {
    M::decode(bytes).map_err(|e| redb::Error::Corrupted(format!("a record does not decode: {e}")))
}
