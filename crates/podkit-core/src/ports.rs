//! Free TCP ports on the loopback interface, for processes that are told a port to bind
//! (`podkit up`'s replicas, the test kit's servers).
//!
//! Ports are taken below the kernel's ephemeral range: a port from that range (what
//! binding port 0 returns) can be taken as the source port of some outgoing connection
//! between the moment it is handed out and the moment a server binds it, which a machine
//! opening thousands of connections makes likely.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;

static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// Lowest port handed out.
const LOWEST: u16 = 12_000;

/// A port on 127.0.0.1 that nothing listens on now, outside the ephemeral range, and
/// that this process has not handed out before.
pub fn free_port() -> u16 {
    let highest = ephemeral_start().saturating_sub(1).max(LOWEST + 1000);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Spread processes (several test binaries run at once) over the range.
    let span = u32::from(highest - LOWEST);
    let mut candidate = LOWEST
        + ((std::process::id().wrapping_mul(7919) + handed_out.len() as u32 * 13) % span) as u16;
    for _ in 0..span {
        candidate = if candidate >= highest {
            LOWEST
        } else {
            candidate + 1
        };
        if handed_out.contains(&candidate) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", candidate)).is_ok() {
            handed_out.insert(candidate);
            return candidate;
        }
    }
    panic!("no free port between {LOWEST} and {highest}");
}

/// The first port of the kernel's ephemeral range.
fn ephemeral_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_below_the_ephemeral_range() {
        let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
        assert_eq!(ports.len(), 50);
        assert!(ports.iter().all(|&p| p >= LOWEST && p < ephemeral_start()));
    }
}
