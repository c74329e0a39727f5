//! Restricting the table to one process subtree (`--pid-filter`).

use std::collections::{HashMap, HashSet};

use super::sample::ProcessRow;

/// Keeps `root` and all its descendants.
pub fn subtree(rows: Vec<ProcessRow>, root: i32) -> Vec<ProcessRow> {
    subtrees(rows, &[root])
}

/// Keeps the processes of `pod` (by their `PODKIT_POD`) and all their descendants: what
/// a sidecar sharing the pod's PID namespace would see.
pub fn pod(rows: Vec<ProcessRow>, pod: &str) -> Vec<ProcessRow> {
    let roots: Vec<i32> = rows
        .iter()
        .filter(|r| r.pod.as_deref() == Some(pod))
        .map(|r| r.pid)
        .collect();
    subtrees(rows, &roots)
}

fn subtrees(rows: Vec<ProcessRow>, roots: &[i32]) -> Vec<ProcessRow> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for row in &rows {
        children.entry(row.ppid).or_default().push(row.pid);
    }
    let mut keep = HashSet::new();
    let mut stack = roots.to_vec();
    while let Some(pid) = stack.pop() {
        if keep.insert(pid) {
            if let Some(kids) = children.get(&pid) {
                stack.extend(kids.iter().copied());
            }
        }
    }
    rows.into_iter().filter(|r| keep.contains(&r.pid)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(pid: i32, ppid: i32) -> ProcessRow {
        ProcessRow {
            pid,
            ppid,
            user: "u".into(),
            command: "c".into(),
            state: "S".into(),
            cpu_percent: 0.0,
            rss_bytes: 0,
            vsize_bytes: 0,
            threads: 1,
            open_fds: None,
            start_time: String::new(),
            start_time_seconds: 0.0,
            pod: None,
        }
    }

    #[test]
    fn keeps_root_and_descendants_only() {
        let rows = vec![
            row(1, 0),
            row(10, 1),
            row(11, 10),
            row(12, 11),
            row(20, 1),
            row(21, 20),
        ];
        let mut pids: Vec<i32> = subtree(rows, 10).iter().map(|r| r.pid).collect();
        pids.sort();
        assert_eq!(pids, vec![10, 11, 12]);
    }

    #[test]
    fn unknown_root_gives_nothing() {
        assert!(subtree(vec![row(1, 0)], 99).is_empty());
    }
}
