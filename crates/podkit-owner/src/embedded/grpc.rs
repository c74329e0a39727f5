//! etcd's v3 gRPC services (KV, Lease, Watch) over the store's core. Writes run on the
//! blocking pool, because they wait for the disk; reads are answered from memory.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use etcd_client::proto::{
    PbAlarmRequest, PbAlarmResponse, PbCompactionRequest, PbCompactionResponse,
    PbDefragmentRequest, PbDefragmentResponse, PbDowngradeRequest, PbDowngradeResponse,
    PbHashKvRequest, PbHashKvResponse, PbHashRequest, PbHashResponse, PbMaintenanceService,
    PbMoveLeaderRequest, PbMoveLeaderResponse, PbSnapshotRequest, PbSnapshotResponse,
    PbStatusRequest, PbStatusResponse, PbTxnOpResponse,
};
use etcd_client::proto::{
    PbDeleteRequest, PbDeleteResponse, PbKvService, PbLeaseGrantRequest, PbLeaseGrantResponse,
    PbLeaseKeepAliveRequest, PbLeaseKeepAliveResponse, PbLeaseLeasesRequest, PbLeaseLeasesResponse,
    PbLeaseRevokeRequest, PbLeaseRevokeResponse, PbLeaseService, PbLeaseStatus,
    PbLeaseTimeToLiveRequest, PbLeaseTimeToLiveResponse, PbPutRequest, PbPutResponse,
    PbRangeRequest, PbRangeResponse, PbRangeStreamResponse, PbResponseHeader, PbTxnRequest,
    PbTxnResponse, PbWatchRequest, PbWatchService,
};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};

use super::core::{lock, Core, CoreError, SharedCore};
use super::state::{Change, RequestError, State};
use super::watch::{self, Header};

type Labels = Vec<(&'static str, &'static str)>;

/// The store's metrics: etcd's gRPC counters under the names etcd's dashboards use, and
/// the size of the store.
#[derive(Clone, Default)]
pub struct StoreMetrics {
    started: Family<Labels, Counter>,
    handled: Family<Labels, Counter>,
    revision: Gauge,
    keys: Gauge,
    leases: Gauge,
}

impl StoreMetrics {
    /// Registers the metrics with the component's registry.
    pub fn register(metrics: &podkit_core::metrics::Metrics) -> StoreMetrics {
        let m = StoreMetrics::default();
        metrics.register(
            "grpc_server_started",
            "RPCs started on the server",
            m.started.clone(),
        );
        metrics.register(
            "grpc_server_handled",
            "RPCs completed on the server, by status code",
            m.handled.clone(),
        );
        metrics.register(
            "podkit_store_revision",
            "The store's current revision",
            m.revision.clone(),
        );
        metrics.register("podkit_store_keys", "Keys in the store", m.keys.clone());
        metrics.register(
            "podkit_store_leases",
            "Leases in the store",
            m.leases.clone(),
        );
        m
    }

    fn labels(service: &'static str, method: &'static str, kind: &'static str) -> Labels {
        vec![
            ("grpc_type", kind),
            ("grpc_service", service),
            ("grpc_method", method),
        ]
    }

    fn start(&self, service: &'static str, method: &'static str, kind: &'static str) {
        self.started
            .get_or_create(&Self::labels(service, method, kind))
            .inc();
    }

    /// Counts a finished unary call.
    fn finish<T>(
        &self,
        service: &'static str,
        method: &'static str,
        result: Result<T, Status>,
    ) -> Result<T, Status> {
        let code = match &result {
            Ok(_) => "OK",
            Err(status) => code_name(status.code()),
        };
        let mut labels = Self::labels(service, method, "unary");
        labels.push(("grpc_code", code));
        self.handled.get_or_create(&labels).inc();
        result
    }

    /// Updates the size gauges from the state.
    pub fn observe(&self, state: &State) {
        self.revision.set(state.revision());
        self.keys.set(state.key_count() as i64);
        self.leases.set(state.lease_count() as i64);
    }
}

fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::InvalidArgument => "InvalidArgument",
        Code::NotFound => "NotFound",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::OutOfRange => "OutOfRange",
        Code::Unavailable => "Unavailable",
        Code::Unimplemented => "Unimplemented",
        _ => "Unknown",
    }
}

/// The gRPC status for a refused or failed request, with etcd's codes and messages.
fn status(error: CoreError) -> Status {
    match error {
        CoreError::Request(e) => {
            let code = match e {
                RequestError::LeaseNotFound => Code::NotFound,
                RequestError::LeaseExists => Code::FailedPrecondition,
                RequestError::LeaseTtlTooLarge
                | RequestError::Compacted
                | RequestError::FutureRevision => Code::OutOfRange,
                _ => Code::InvalidArgument,
            };
            Status::new(code, e.to_string())
        }
        CoreError::Disk(e) => Status::unavailable(format!("podkit store: {e}")),
    }
}

/// The KV, Lease and Watch services; cheap to clone.
#[derive(Clone)]
pub struct Services {
    core: SharedCore,
    header: Header,
    metrics: StoreMetrics,
    /// Ends long-lived streams when the server drains.
    shutdown: CancellationToken,
}

const KV: &str = "etcdserverpb.KV";
const LEASE: &str = "etcdserverpb.Lease";
const WATCH: &str = "etcdserverpb.Watch";
const MAINTENANCE: &str = "etcdserverpb.Maintenance";

/// The version `Status` reports: the etcd API level served, and podkit's own version.
const VERSION: &str = concat!("3.4.0+podkit.", env!("CARGO_PKG_VERSION"));

impl Services {
    /// Services over `core`.
    pub fn new(core: SharedCore, metrics: StoreMetrics, shutdown: CancellationToken) -> Services {
        let cluster_id = lock(&core).cluster_id;
        metrics.observe(lock(&core).state());
        let header: Header = Arc::new(move |revision| PbResponseHeader {
            cluster_id,
            member_id: cluster_id.rotate_left(1),
            revision,
            raft_term: 1,
        });
        Services {
            core,
            header,
            metrics,
            shutdown,
        }
    }

    /// Applies a write on the blocking pool (it waits for the disk); returns its answer
    /// and the revision after it.
    async fn write<T: Send + 'static>(
        &self,
        write: impl FnOnce(&mut State) -> Result<(T, Change), RequestError> + Send + 'static,
    ) -> Result<(T, i64), Status> {
        let core = self.core.clone();
        let metrics = self.metrics.clone();
        tokio::task::spawn_blocking(move || {
            let mut core = lock(&core);
            let (answer, _) = core.write(write).map_err(status)?;
            metrics.observe(core.state());
            Ok((answer, core.state().revision()))
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
    }

    /// Revokes expired leases until `shutdown`, checking every `every`.
    pub async fn expire_leases(self, every: std::time::Duration) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = self.shutdown.cancelled() => return,
            }
            let core = self.core.clone();
            let metrics = self.metrics.clone();
            let expired = tokio::task::spawn_blocking(move || {
                let mut core: std::sync::MutexGuard<'_, Core> = lock(&core);
                let result = core.expire(Instant::now());
                metrics.observe(core.state());
                result
            })
            .await;
            match expired {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::debug!(leases = n, "expired leases revoked"),
                Ok(Err(e)) => tracing::error!(error = %e, "could not revoke expired leases"),
                Err(e) => tracing::error!(error = %e, "lease expiry task failed"),
            }
        }
    }
}

/// Gives a transaction's response, and every response inside it, the header.
fn fill_headers(txn: &mut PbTxnResponse, header: PbResponseHeader) {
    txn.header = Some(header);
    for op in &mut txn.responses {
        match &mut op.response {
            Some(PbTxnOpResponse::ResponseRange(r)) => r.header = Some(header),
            Some(PbTxnOpResponse::ResponsePut(r)) => r.header = Some(header),
            Some(PbTxnOpResponse::ResponseDeleteRange(r)) => r.header = Some(header),
            Some(PbTxnOpResponse::ResponseTxn(t)) => fill_headers(t, header),
            None => {}
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl PbKvService for Services {
    async fn range(
        &self,
        request: Request<PbRangeRequest>,
    ) -> Result<Response<PbRangeResponse>, Status> {
        self.metrics.start(KV, "Range", "unary");
        let result = {
            let core = lock(&self.core);
            core.range(request.get_ref())
                .map(|mut r| {
                    r.header = Some((self.header)(core.state().revision()));
                    Response::new(r)
                })
                .map_err(|e| status(e.into()))
        };
        self.metrics.finish(KV, "Range", result)
    }

    type RangeStreamStream = BoxStream<PbRangeStreamResponse>;

    async fn range_stream(
        &self,
        _request: Request<PbRangeRequest>,
    ) -> Result<Response<Self::RangeStreamStream>, Status> {
        Err(Status::unimplemented(
            "podkit store: RangeStream is not served; use Range",
        ))
    }

    async fn put(&self, request: Request<PbPutRequest>) -> Result<Response<PbPutResponse>, Status> {
        self.metrics.start(KV, "Put", "unary");
        let request = request.into_inner();
        let result = self
            .write(move |s| s.put(&request))
            .await
            .map(|(mut r, revision)| {
                r.header = Some((self.header)(revision));
                Response::new(r)
            });
        self.metrics.finish(KV, "Put", result)
    }

    async fn delete_range(
        &self,
        request: Request<PbDeleteRequest>,
    ) -> Result<Response<PbDeleteResponse>, Status> {
        self.metrics.start(KV, "DeleteRange", "unary");
        let request = request.into_inner();
        let result =
            self.write(move |s| s.delete_range(&request))
                .await
                .map(|(mut r, revision)| {
                    r.header = Some((self.header)(revision));
                    Response::new(r)
                });
        self.metrics.finish(KV, "DeleteRange", result)
    }

    async fn txn(&self, request: Request<PbTxnRequest>) -> Result<Response<PbTxnResponse>, Status> {
        self.metrics.start(KV, "Txn", "unary");
        let request = request.into_inner();
        let result = self
            .write(move |s| s.txn(&request))
            .await
            .map(|(mut r, revision)| {
                fill_headers(&mut r, (self.header)(revision));
                Response::new(r)
            });
        self.metrics.finish(KV, "Txn", result)
    }

    async fn compact(
        &self,
        request: Request<PbCompactionRequest>,
    ) -> Result<Response<PbCompactionResponse>, Status> {
        self.metrics.start(KV, "Compact", "unary");
        // Past versions are never kept, and the event history is bounded by --history:
        // there is nothing to compact.
        let revision = lock(&self.core).state().revision();
        let result = if request.get_ref().revision > revision {
            Err(status(RequestError::FutureRevision.into()))
        } else {
            Ok(Response::new(PbCompactionResponse {
                header: Some((self.header)(revision)),
            }))
        };
        self.metrics.finish(KV, "Compact", result)
    }
}

#[tonic::async_trait]
impl PbLeaseService for Services {
    async fn lease_grant(
        &self,
        request: Request<PbLeaseGrantRequest>,
    ) -> Result<Response<PbLeaseGrantResponse>, Status> {
        self.metrics.start(LEASE, "LeaseGrant", "unary");
        let PbLeaseGrantRequest { ttl, id } = request.into_inner();
        let result = self
            .write(move |s| s.grant(id, ttl, Instant::now(), || fastrand::i64(1..i64::MAX)))
            .await
            .map(|((id, ttl), revision)| {
                Response::new(PbLeaseGrantResponse {
                    header: Some((self.header)(revision)),
                    id,
                    ttl,
                    error: String::new(),
                })
            });
        self.metrics.finish(LEASE, "LeaseGrant", result)
    }

    async fn lease_revoke(
        &self,
        request: Request<PbLeaseRevokeRequest>,
    ) -> Result<Response<PbLeaseRevokeResponse>, Status> {
        self.metrics.start(LEASE, "LeaseRevoke", "unary");
        let id = request.into_inner().id;
        let result = self
            .write(move |s| s.revoke(id).map(|change| ((), change)))
            .await
            .map(|((), revision)| {
                Response::new(PbLeaseRevokeResponse {
                    header: Some((self.header)(revision)),
                })
            });
        self.metrics.finish(LEASE, "LeaseRevoke", result)
    }

    type LeaseKeepAliveStream = BoxStream<PbLeaseKeepAliveResponse>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<PbLeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        self.metrics.start(LEASE, "LeaseKeepAlive", "bidi_stream");
        let mut requests = request.into_inner();
        let (out, answers) = tokio::sync::mpsc::channel(16);
        let services = self.clone();
        tokio::spawn(async move {
            loop {
                let request = tokio::select! {
                    request = requests.message() => request,
                    _ = services.shutdown.cancelled() => return,
                };
                let Ok(Some(PbLeaseKeepAliveRequest { id })) = request else {
                    return;
                };
                let (ttl, revision) = {
                    let mut core = lock(&services.core);
                    let ttl = core.keep_alive(id, Instant::now());
                    (ttl.unwrap_or(0), core.state().revision())
                };
                let answer = PbLeaseKeepAliveResponse {
                    header: Some((services.header)(revision)),
                    id,
                    ttl,
                };
                if out.send(Ok(answer)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(answers))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<PbLeaseTimeToLiveRequest>,
    ) -> Result<Response<PbLeaseTimeToLiveResponse>, Status> {
        self.metrics.start(LEASE, "LeaseTimeToLive", "unary");
        let PbLeaseTimeToLiveRequest { id, keys } = request.into_inner();
        let core = lock(&self.core);
        // A lease that does not exist answers TTL -1, as etcd's does.
        let (ttl, granted_ttl, attached) = core
            .state()
            .time_to_live(id, Instant::now())
            .unwrap_or((-1, 0, Vec::new()));
        let result = Ok(Response::new(PbLeaseTimeToLiveResponse {
            header: Some((self.header)(core.state().revision())),
            id,
            ttl,
            granted_ttl,
            keys: if keys { attached } else { Vec::new() },
        }));
        self.metrics.finish(LEASE, "LeaseTimeToLive", result)
    }

    async fn lease_leases(
        &self,
        _request: Request<PbLeaseLeasesRequest>,
    ) -> Result<Response<PbLeaseLeasesResponse>, Status> {
        self.metrics.start(LEASE, "LeaseLeases", "unary");
        let core = lock(&self.core);
        let result = Ok(Response::new(PbLeaseLeasesResponse {
            header: Some((self.header)(core.state().revision())),
            leases: core
                .state()
                .lease_ids()
                .into_iter()
                .map(|id| PbLeaseStatus { id })
                .collect(),
        }));
        self.metrics.finish(LEASE, "LeaseLeases", result)
    }
}

#[tonic::async_trait]
impl PbWatchService for Services {
    type WatchStream = BoxStream<etcd_client::proto::PbWatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<PbWatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        self.metrics.start(WATCH, "Watch", "bidi_stream");
        let (out, responses) = tokio::sync::mpsc::channel(64);
        let session = watch::session(
            self.core.clone(),
            request.into_inner(),
            out,
            self.header.clone(),
        );
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = session => {}
                _ = shutdown.cancelled() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(responses))))
    }
}

/// What a single-machine store has no use for.
fn not_served(what: &str) -> Status {
    Status::unimplemented(format!(
        "podkit store: {what} is not served by a single-machine store"
    ))
}

#[tonic::async_trait]
impl PbMaintenanceService for Services {
    async fn alarm(
        &self,
        _request: Request<PbAlarmRequest>,
    ) -> Result<Response<PbAlarmResponse>, Status> {
        self.metrics.start(MAINTENANCE, "Alarm", "unary");
        let revision = lock(&self.core).state().revision();
        // No quota and no corruption checks: never an alarm.
        let result = Ok(Response::new(PbAlarmResponse {
            header: Some((self.header)(revision)),
            alarms: Vec::new(),
        }));
        self.metrics.finish(MAINTENANCE, "Alarm", result)
    }

    async fn status(
        &self,
        _request: Request<PbStatusRequest>,
    ) -> Result<Response<PbStatusResponse>, Status> {
        self.metrics.start(MAINTENANCE, "Status", "unary");
        let (revision, size) = {
            let core = lock(&self.core);
            (core.state().revision(), core.disk_size() as i64)
        };
        let header = (self.header)(revision);
        let result = Ok(Response::new(PbStatusResponse {
            version: VERSION.to_string(),
            db_size: size,
            db_size_in_use: size,
            // The one member leads its single-member "cluster".
            leader: header.member_id,
            raft_index: revision as u64,
            raft_applied_index: revision as u64,
            raft_term: header.raft_term,
            header: Some(header),
            ..PbStatusResponse::default()
        }));
        self.metrics.finish(MAINTENANCE, "Status", result)
    }

    async fn defragment(
        &self,
        _request: Request<PbDefragmentRequest>,
    ) -> Result<Response<PbDefragmentResponse>, Status> {
        Err(not_served("Defragment"))
    }

    async fn hash(
        &self,
        _request: Request<PbHashRequest>,
    ) -> Result<Response<PbHashResponse>, Status> {
        Err(not_served("Hash"))
    }

    async fn hash_kv(
        &self,
        _request: Request<PbHashKvRequest>,
    ) -> Result<Response<PbHashKvResponse>, Status> {
        Err(not_served("HashKV"))
    }

    type SnapshotStream = BoxStream<PbSnapshotResponse>;

    async fn snapshot(
        &self,
        _request: Request<PbSnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_served(
            "Snapshot (copy the --data directory of a stopped store instead)",
        ))
    }

    async fn move_leader(
        &self,
        _request: Request<PbMoveLeaderRequest>,
    ) -> Result<Response<PbMoveLeaderResponse>, Status> {
        Err(not_served("MoveLeader"))
    }

    async fn downgrade(
        &self,
        _request: Request<PbDowngradeRequest>,
    ) -> Result<Response<PbDowngradeResponse>, Status> {
        Err(not_served("Downgrade"))
    }
}
