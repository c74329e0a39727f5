//! Turning an [`Endpoint`] into socket addresses to try, in order, and how long the answer
//! may be reused.

use std::net::SocketAddr;
use std::time::Duration;

use super::dns::{self, Answer, Kind};
use super::mapping::{host_list, Endpoint};

/// Addresses to try in order, and how long they hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub addrs: Vec<SocketAddr>,
    /// The DNS TTL for SRV answers; `None` when the answer has no TTL of its own.
    pub ttl: Option<Duration>,
}

/// Where and how long to ask.
#[derive(Debug, Clone, Copy)]
pub struct Lookup {
    /// DNS server for SRV and its targets (default: the first of /etc/resolv.conf).
    pub dns_server: Option<SocketAddr>,
    pub timeout: Duration,
}

/// Resolves `endpoint`; an endpoint that yields no address is an error.
pub async fn resolve(endpoint: &Endpoint, lookup: Lookup) -> Result<Resolved, String> {
    let resolved = match endpoint {
        Endpoint::Hosts(hosts) => Resolved {
            addrs: resolve_hosts(hosts, lookup.timeout).await?,
            ttl: None,
        },
        Endpoint::Env(var) => {
            let value = std::env::var(var).map_err(|_| format!("${var} is not set"))?;
            let hosts = host_list(&value).map_err(|e| format!("${var}: {e}"))?;
            Resolved {
                addrs: resolve_hosts(&hosts, lookup.timeout).await?,
                ttl: None,
            }
        }
        Endpoint::Srv(name) => resolve_srv(name, lookup).await?,
    };
    if resolved.addrs.is_empty() {
        return Err(format!("{} has no address", endpoint.describe()));
    }
    Ok(resolved)
}

async fn resolve_hosts(hosts: &[String], timeout: Duration) -> Result<Vec<SocketAddr>, String> {
    let mut addrs = Vec::new();
    let mut last_error = None;
    for host in hosts {
        match tokio::time::timeout(timeout, tokio::net::lookup_host(host.as_str())).await {
            Ok(Ok(found)) => addrs.extend(found),
            Ok(Err(e)) => last_error = Some(format!("{host}: {e}")),
            Err(_) => last_error = Some(format!("{host}: no answer within {timeout:?}")),
        }
    }
    match (addrs.is_empty(), last_error) {
        (true, Some(e)) => Err(e),
        _ => Ok(dedup(addrs)),
    }
}

async fn resolve_srv(name: &str, lookup: Lookup) -> Result<Resolved, String> {
    let server = lookup
        .dns_server
        .or_else(dns::system_server)
        .ok_or("no DNS server: give --dns-server or a nameserver in /etc/resolv.conf")?;
    let answers = dns::lookup(server, name, Kind::Srv, lookup.timeout)
        .await
        .map_err(|e| format!("SRV {name}: {e}"))?;
    let mut targets = srv_order(&answers, fastrand::u32(..));
    if targets.is_empty() {
        return Err(format!("SRV {name}: no records"));
    }
    let ttl = answers
        .iter()
        .filter_map(|a| match a {
            Answer::Srv { ttl, .. } => Some(*ttl),
            _ => None,
        })
        .min()
        .map(|s| Duration::from_secs(u64::from(s)));
    let mut addrs = Vec::new();
    for (target, port) in targets.drain(..) {
        // The additional section often carries the targets' addresses already.
        let given: Vec<SocketAddr> = answers
            .iter()
            .filter_map(|a| match a {
                Answer::A { name, addr, .. } if name.eq_ignore_ascii_case(&target) => {
                    Some(SocketAddr::from((*addr, port)))
                }
                _ => None,
            })
            .collect();
        if !given.is_empty() {
            addrs.extend(given);
            continue;
        }
        let asked = dns::lookup(server, &target, Kind::A, lookup.timeout).await;
        let from_dns: Vec<SocketAddr> = asked
            .unwrap_or_default()
            .into_iter()
            .filter_map(|a| match a {
                Answer::A { addr, .. } => Some(SocketAddr::from((addr, port))),
                _ => None,
            })
            .collect();
        if from_dns.is_empty() {
            // Not in that server: the system's resolver (hosts file, other servers).
            if let Ok(found) = resolve_hosts(&[format!("{target}:{port}")], lookup.timeout).await {
                addrs.extend(found);
            }
        } else {
            addrs.extend(from_dns);
        }
    }
    Ok(Resolved {
        addrs: dedup(addrs),
        ttl,
    })
}

/// SRV targets in the order RFC 2782 asks: lowest priority first; within a priority, a
/// weighted random order (weight 0 entries last), drawn from `seed`.
pub fn srv_order(answers: &[Answer], seed: u32) -> Vec<(String, u16)> {
    let mut records: Vec<(u16, u16, String, u16)> = answers
        .iter()
        .filter_map(|a| match a {
            Answer::Srv {
                priority,
                weight,
                port,
                target,
                ..
            } if target != "." && !target.is_empty() => {
                Some((*priority, *weight, target.clone(), *port))
            }
            _ => None,
        })
        .collect();
    records.sort_by_key(|r| r.0);
    let mut rng = fastrand::Rng::with_seed(u64::from(seed));
    let mut out = Vec::new();
    let mut start = 0;
    while start < records.len() {
        let priority = records[start].0;
        let end = records[start..]
            .iter()
            .position(|r| r.0 != priority)
            .map_or(records.len(), |n| start + n);
        let mut group: Vec<(u16, u16, String, u16)> = records[start..end].to_vec();
        while !group.is_empty() {
            let total: u32 = group.iter().map(|r| u32::from(r.1)).sum();
            let pick = if total == 0 {
                0
            } else {
                let mut point = rng.u32(0..total);
                group
                    .iter()
                    .position(|r| {
                        let w = u32::from(r.1);
                        if point < w {
                            true
                        } else {
                            point -= w;
                            false
                        }
                    })
                    .unwrap_or(0)
            };
            let chosen = group.remove(pick);
            out.push((chosen.2, chosen.3));
        }
        start = end;
    }
    out
}

fn dedup(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut seen = std::collections::HashSet::new();
    addrs.into_iter().filter(|a| seen.insert(*a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn srv(priority: u16, weight: u16, target: &str) -> Answer {
        Answer::Srv {
            priority,
            weight,
            port: 1,
            target: target.into(),
            ttl: 5,
        }
    }

    #[test]
    fn priority_first_then_weighted() {
        let answers = [
            srv(20, 0, "backup"),
            srv(10, 90, "big"),
            srv(10, 10, "small"),
        ];
        let mut big_first = 0;
        for seed in 0..1000 {
            let order = srv_order(&answers, seed);
            assert_eq!(order.len(), 3);
            assert_eq!(order[2].0, "backup");
            if order[0].0 == "big" {
                big_first += 1;
            }
        }
        assert!((850..=950).contains(&big_first), "{big_first}");
        assert!(
            srv_order(&[srv(1, 1, ".")], 0).is_empty(),
            "'.' means no service"
        );
    }

    #[tokio::test]
    async fn hosts_and_env_resolve_in_order() {
        let lookup = Lookup {
            dns_server: None,
            timeout: Duration::from_secs(5),
        };
        let r = resolve(
            &Endpoint::Hosts(vec!["127.0.0.2:1".into(), "127.0.0.1:2".into()]),
            lookup,
        )
        .await
        .unwrap();
        assert_eq!(
            r.addrs,
            [
                "127.0.0.2:1".parse().unwrap(),
                "127.0.0.1:2".parse().unwrap()
            ]
        );
        assert!(
            resolve(&Endpoint::Env("PODKIT_TEST_UNSET_VAR".into()), lookup)
                .await
                .unwrap_err()
                .contains("not set")
        );
    }
}
