//! `podkit ambassador split` (chapter 3's 10% experiment and tee) and `podkit shard`
//! (chapter 6's consistent sharding proxy with replicated shards).

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use podkit_testkit::backend::{Backend, Mode};
use podkit_testkit::probe::http_request;

#[test]
fn split_keeps_each_client_on_one_side_and_sends_ten_percent_to_the_experiment() {
    let web = Backend::start("web");
    let experiment = Backend::start("experiment");
    let web_side = format!("web={},weight=9", web.url());
    let exp_side = format!("experiment={},weight=1", experiment.url());
    let (split, addr) = start(&[
        "ambassador",
        "split",
        "--backend",
        &web_side,
        "--backend",
        &exp_side,
        "--sticky",
        "$http_x_client",
    ]);
    let mut sides: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for client in 0..1000 {
            let id = format!("10.0.{}.{}", client / 256, client % 256);
            let side = backend_of(&get_with(addr, "/", &[("X-Client", &id)]));
            match round {
                0 => {
                    sides.insert(id, side);
                }
                _ => assert_eq!(sides[&id], side, "client {id} switched sides"),
            }
        }
    }
    let on_experiment = sides.values().filter(|s| *s == "experiment").count();
    assert!(
        (80..=120).contains(&on_experiment),
        "{on_experiment} of 1000 clients on the experiment"
    );
    let counted = metric(
        split.admin,
        "podkit_proxy_split_requests_total",
        &["choice=\"experiment\""],
    );
    assert_eq!(counted, Some(2.0 * on_experiment as f64));
}

#[test]
fn split_sticks_by_client_address_by_default() {
    let web = Backend::start("web");
    let experiment = Backend::start("experiment");
    let (_split, addr) = start(&[
        "ambassador",
        "split",
        "--backend",
        &format!("web={},weight=1", web.url()),
        "--backend",
        &format!("experiment={},weight=1", experiment.url()),
    ]);
    let first = backend_of(&get(addr, "/"));
    for _ in 0..20 {
        assert_eq!(backend_of(&get(addr, "/")), first);
    }
}

#[test]
fn tee_mirrors_every_request() {
    let web = Backend::start("web");
    let experiment = Backend::start("experiment");
    let shadow = Backend::start("shadow");
    let (split, addr) = start(&[
        "ambassador",
        "split",
        "--backend",
        &format!("web={},weight=1", web.url()),
        "--backend",
        &format!("experiment={},weight=1", experiment.url()),
        "--tee",
        &shadow.url(),
    ]);
    for i in 0..100 {
        assert_eq!(get(addr, &format!("/get/{i}")).status, 200);
    }
    for _ in 0..20 {
        let resp = http_request(addr, "POST", "/echo", &[], b"mirrored body").unwrap();
        assert_eq!(resp.text(), "mirrored body");
    }
    assert!(
        eventually(Duration::from_secs(10), || shadow.requests() == 120),
        "shadow saw {} of 120",
        shadow.requests()
    );
    // The shadow counts a request when it arrives; the tee counts it once answered.
    assert!(eventually(Duration::from_secs(10), || {
        metric(
            split.admin,
            "podkit_proxy_tee_requests_total",
            &["outcome=\"sent\""],
        ) == Some(120.0)
    }));
    assert_eq!(web.requests() + experiment.requests(), 120);
}

#[test]
fn a_hanging_tee_backend_does_not_slow_the_real_response() {
    let web = Backend::start("web");
    let experiment = Backend::start("experiment");
    let shadow = Backend::start("shadow");
    shadow.set_mode(Mode::Hang);
    let (split, addr) = start(&[
        "ambassador",
        "split",
        "--backend",
        &format!("web={},weight=1", web.url()),
        "--backend",
        &format!("experiment={},weight=1", experiment.url()),
        "--tee",
        &shadow.url(),
        "--tee-queue",
        "4",
        "--tee-timeout",
        "30s",
    ]);
    for i in 0..50 {
        let started = Instant::now();
        assert_eq!(get(addr, &format!("/x/{i}")).status, 200);
        // The shadow never answers; the real answer cannot be waiting for it.
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    let dropped = metric(
        split.admin,
        "podkit_proxy_tee_requests_total",
        &["outcome=\"dropped\""],
    )
    .unwrap();
    assert_eq!(
        dropped, 46.0,
        "4 mirrored requests hang in the queue, the other 46 are dropped"
    );
}

#[test]
fn shard_sends_each_key_to_one_replicated_shard() {
    let s0 = Backend::start("s0");
    let s1a = Backend::start("s1a");
    let s1b = Backend::start("s1b");
    let s2 = Backend::start("s2");
    let replicated = format!("{}|{}", s1a.url(), s1b.url());
    let (shard, addr) = start(&[
        "shard",
        "--shard",
        &s0.url(),
        "--shard",
        &replicated,
        "--shard",
        &s2.url(),
    ]);
    let group = |name: &str| {
        if name.starts_with("s1") {
            "s1".to_string()
        } else {
            name.to_string()
        }
    };
    let mut owner: HashMap<String, String> = HashMap::new();
    for round in 0..2 {
        for key in 0..300 {
            let path = format!("/dictionary/word{key}");
            let shard_name = group(&backend_of(&get(addr, &path)));
            if round == 0 {
                owner.insert(path, shard_name);
            } else {
                assert_eq!(owner[&path], shard_name, "{path} changed shard");
            }
        }
    }
    let mut per_shard: HashMap<&str, usize> = HashMap::new();
    for shard in owner.values() {
        *per_shard.entry(shard.as_str()).or_default() += 1;
    }
    assert_eq!(per_shard.len(), 3, "{per_shard:?}");
    assert!(
        s1a.requests() > 0 && s1b.requests() > 0,
        "both replicas of the shard serve"
    );
    let s1_id = s1a.addr.to_string();
    let counted = metric(
        shard.admin,
        "podkit_proxy_shard_requests_total",
        &[&format!("choice=\"{s1_id}\"")],
    );
    assert_eq!(
        counted,
        Some((s1a.requests() + s1b.requests()) as f64),
        "per-shard request counts"
    );
}

#[test]
fn shard_placement_matches_nginx_for_single_server_shards() {
    let shards: Vec<Backend> = (0..3).map(|i| Backend::start(&format!("n{i}"))).collect();
    let servers: String = shards
        .iter()
        .map(|b| format!("server {};", b.addr))
        .collect::<Vec<_>>()
        .join(" ");
    let nginx = podkit_testkit::servers::Nginx::start(&format!(
        "upstream shards {{ hash $request_uri consistent; {servers} }}\n\
         server {{ listen 127.0.0.1:{{port}}; location / {{ proxy_pass http://shards; }} }}"
    ))
    .expect("nginx");
    let urls: Vec<String> = shards.iter().map(|b| b.url()).collect();
    let (_shard, addr) = start(&[
        "shard", "--shard", &urls[0], "--shard", &urls[1], "--shard", &urls[2],
    ]);
    for i in 0..1000 {
        let path = format!("/doc/{i}");
        assert_eq!(
            backend_of(&get(addr, &path)),
            backend_of(&get(nginx.addr, &path)),
            "{path}"
        );
    }
}
