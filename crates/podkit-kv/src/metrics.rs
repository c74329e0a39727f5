//! Prometheus metrics of the ambassador, per pool and server.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::backend::ServerMetrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServerLabels {
    pool: String,
    server: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
}

fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.00005, 2.0, 18))
}

/// The families.
#[derive(Clone, Debug)]
pub struct KvMetrics {
    requests: Family<ServerLabels, Counter>,
    request_bytes: Family<ServerLabels, Counter>,
    responses: Family<ServerLabels, Counter>,
    response_bytes: Family<ServerLabels, Counter>,
    errors: Family<ServerLabels, Counter>,
    timeouts: Family<ServerLabels, Counter>,
    ejections: Family<ServerLabels, Counter>,
    in_flight: Family<ServerLabels, Gauge>,
    connections: Family<ServerLabels, Gauge>,
    latency: Family<ServerLabels, Histogram, fn() -> Histogram>,
    clients: Family<PoolLabels, Gauge>,
}

impl KvMetrics {
    /// Registers the families.
    pub fn register(metrics: &podkit_core::metrics::Metrics) -> KvMetrics {
        let m = KvMetrics {
            requests: Family::default(),
            request_bytes: Family::default(),
            responses: Family::default(),
            response_bytes: Family::default(),
            errors: Family::default(),
            timeouts: Family::default(),
            ejections: Family::default(),
            in_flight: Family::default(),
            connections: Family::default(),
            latency: Family::new_with_constructor(latency),
            clients: Family::default(),
        };
        metrics.register(
            "podkit_kv_server_requests",
            "Requests sent to each server",
            m.requests.clone(),
        );
        metrics.register(
            "podkit_kv_server_request_bytes",
            "Request bytes sent to each server",
            m.request_bytes.clone(),
        );
        metrics.register(
            "podkit_kv_server_responses",
            "Replies from each server",
            m.responses.clone(),
        );
        metrics.register(
            "podkit_kv_server_response_bytes",
            "Reply bytes from each server",
            m.response_bytes.clone(),
        );
        metrics.register(
            "podkit_kv_server_errors",
            "Failed requests or connections per server",
            m.errors.clone(),
        );
        metrics.register(
            "podkit_kv_server_timeouts",
            "Requests that passed the pool's timeout",
            m.timeouts.clone(),
        );
        metrics.register(
            "podkit_kv_server_ejections",
            "Times each server was ejected",
            m.ejections.clone(),
        );
        metrics.register(
            "podkit_kv_server_in_flight",
            "Requests waiting for a reply per server",
            m.in_flight.clone(),
        );
        metrics.register(
            "podkit_kv_server_connected",
            "1 while the server's connection is open",
            m.connections.clone(),
        );
        metrics.register(
            "podkit_kv_server_latency_seconds",
            "Time from request to reply per server",
            m.latency.clone(),
        );
        metrics.register(
            "podkit_kv_client_connections",
            "Client connections open per pool",
            m.clients.clone(),
        );
        m
    }

    /// Handles of one server.
    pub fn server(&self, pool: &str, server: &str) -> ServerMetrics {
        let labels = ServerLabels {
            pool: pool.to_string(),
            server: server.to_string(),
        };
        ServerMetrics {
            requests: self.requests.get_or_create(&labels).clone(),
            request_bytes: self.request_bytes.get_or_create(&labels).clone(),
            responses: self.responses.get_or_create(&labels).clone(),
            response_bytes: self.response_bytes.get_or_create(&labels).clone(),
            errors: self.errors.get_or_create(&labels).clone(),
            timeouts: self.timeouts.get_or_create(&labels).clone(),
            ejections: self.ejections.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            connections: self.connections.get_or_create(&labels).clone(),
            latency: self.latency.get_or_create(&labels).clone(),
        }
    }

    /// The client-connection gauge of a pool.
    pub fn clients(&self, pool: &str) -> Gauge {
        self.clients
            .get_or_create(&PoolLabels {
                pool: pool.to_string(),
            })
            .clone()
    }
}
