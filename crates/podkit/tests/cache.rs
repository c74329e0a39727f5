//! `podkit cache` (chapter 5's caching layer): RFC 9111 behaviour against a real origin
//! whose responses set each header case, request coalescing, the memory bound, purge.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use podkit_testkit::backend::{Backend, Mode};
use podkit_testkit::probe::{http_request, HttpResponse};

fn cache(origin: &Backend, extra: &[&str]) -> (podkit_testkit::podkit::Podkit, SocketAddr) {
    let url = origin.url();
    let mut args = vec!["cache", "--upstream", &url];
    args.extend_from_slice(extra);
    start(&args)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn x_cache(resp: &HttpResponse) -> &str {
    resp.header("x-cache").unwrap_or("")
}

fn req(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    http_request(addr, method, path, headers, b"").unwrap()
}

#[test]
fn freshness_from_max_age() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/fresh?cc=max-age%3D60";
    let first = get(addr, path);
    assert_eq!((first.status, x_cache(&first)), (200, "MISS"));
    let second = get(addr, path);
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.text(), first.text());
    assert!(second.header("age").is_some());
    assert_eq!(origin.requests_for("/origin/fresh"), 1);
}

#[test]
fn freshness_from_s_maxage_and_expires() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    get(addr, "/origin/s?cc=max-age%3D0%2C%20s-maxage%3D60");
    assert_eq!(
        x_cache(&get(addr, "/origin/s?cc=max-age%3D0%2C%20s-maxage%3D60")),
        "HIT"
    );
    get(addr, "/origin/e?expires=60");
    assert_eq!(x_cache(&get(addr, "/origin/e?expires=60")), "HIT");
    get(addr, "/origin/old?expires=-10");
    assert_eq!(x_cache(&get(addr, "/origin/old?expires=-10")), "MISS");
    assert_eq!(origin.requests_for("/origin/old"), 2);
}

#[test]
fn heuristic_freshness_only_from_last_modified() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    // Modified 1000 s ago: 10% gives 100 s of freshness.
    let path = format!("/origin/h?lm={}", unix_now() - 1000);
    get(addr, &path);
    assert_eq!(x_cache(&get(addr, &path)), "HIT");
    // No explicit freshness, no validator: never reused.
    get(addr, "/origin/plain");
    assert_eq!(x_cache(&get(addr, "/origin/plain")), "MISS");
}

#[test]
fn no_store_and_private_are_not_stored() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    for path in [
        "/origin/ns?cc=no-store%2C%20max-age%3D60",
        "/origin/pv?cc=private%2C%20max-age%3D60",
    ] {
        assert_eq!(x_cache(&get(addr, path)), "MISS");
        assert_eq!(x_cache(&get(addr, path)), "MISS");
    }
    assert_eq!(origin.requests_for("/origin/ns"), 2);
    assert_eq!(origin.requests_for("/origin/pv"), 2);
    // A request's no-store is obeyed too.
    get(addr, "/origin/rq?cc=max-age%3D60");
    assert_eq!(
        x_cache(&req(
            addr,
            "GET",
            "/origin/rq?cc=max-age%3D60",
            &[("Cache-Control", "no-store")]
        )),
        "PASS"
    );
}

#[test]
fn vary_keeps_a_variant_per_header_value() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/v?cc=max-age%3D60&vary=Accept-Language";
    let en = req(addr, "GET", path, &[("Accept-Language", "en")]);
    let fr = req(addr, "GET", path, &[("Accept-Language", "fr")]);
    assert_eq!((x_cache(&en), x_cache(&fr)), ("MISS", "MISS"));
    let en2 = req(addr, "GET", path, &[("Accept-Language", "en")]);
    let fr2 = req(addr, "GET", path, &[("Accept-Language", "fr")]);
    assert_eq!((x_cache(&en2), x_cache(&fr2)), ("HIT", "HIT"));
    assert!(
        en2.text().ends_with(" en") && fr2.text().ends_with(" fr"),
        "{} / {}",
        en2.text(),
        fr2.text()
    );
    assert_eq!(origin.requests_for("/origin/v"), 2);
}

#[test]
fn revalidation_with_etag_updates_stored_headers_from_the_304() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/etag?cc=max-age%3D1&etag=v1";
    let first = get(addr, path);
    assert_eq!(first.header("x-origin-count"), Some("1"));
    std::thread::sleep(Duration::from_millis(1200));
    let second = get(addr, path);
    assert_eq!(x_cache(&second), "HIT", "revalidated by a 304");
    assert_eq!(second.text(), first.text(), "the stored body is served");
    assert_eq!(
        second.header("x-origin-count"),
        Some("2"),
        "headers refreshed from the 304"
    );
    assert_eq!(origin.requests_for("/origin/etag"), 2);
}

#[test]
fn revalidation_with_last_modified() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = &format!("/origin/lm?cc=max-age%3D1&lm={}", unix_now() - 3600);
    let first = get(addr, path);
    std::thread::sleep(Duration::from_millis(1200));
    let second = get(addr, path);
    assert_eq!((x_cache(&second), second.text()), ("HIT", first.text()));
    assert_eq!(origin.requests_for("/origin/lm"), 2);
}

#[test]
fn no_cache_responses_are_revalidated_every_time() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/nc?cc=no-cache&etag=v1";
    let first = get(addr, path);
    for _ in 0..3 {
        let again = get(addr, path);
        assert_eq!(again.text(), first.text());
    }
    assert_eq!(origin.requests_for("/origin/nc"), 4);
}

#[test]
fn stale_while_revalidate_serves_stale_and_refreshes_in_the_background() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    // max-age=3: the origin's Date has one-second granularity, so a stored
    // copy may already be up to a second old; three seconds leave the
    // refreshed copy fresh while the test looks at it.
    let path = "/origin/swr?cc=max-age%3D3%2C%20stale-while-revalidate%3D30";
    let first = get(addr, path);
    std::thread::sleep(Duration::from_millis(3100));
    let stale = get(addr, path);
    assert_eq!((x_cache(&stale), stale.text()), ("STALE", first.text()));
    // The background fetch lands in the store shortly after the origin answers it.
    let mut refreshed = get(addr, path);
    assert!(eventually(Duration::from_secs(5), || {
        refreshed = get(addr, path);
        x_cache(&refreshed) == "HIT"
    }));
    assert_ne!(
        refreshed.text(),
        first.text(),
        "the background fetch replaced it"
    );
    assert_eq!(
        origin.requests_for("/origin/swr"),
        2,
        "one background fetch"
    );
}

#[test]
fn stale_if_error_serves_stale_when_the_origin_fails() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let with = "/origin/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    let without = "/origin/nosie?cc=max-age%3D1";
    let first = get(addr, with);
    get(addr, without);
    std::thread::sleep(Duration::from_millis(1200));
    origin.set_mode(Mode::Fail);
    let stale = get(addr, with);
    assert_eq!(
        (stale.status, x_cache(&stale), stale.text()),
        (200, "STALE", first.text())
    );
    assert_eq!(get(addr, without).status, 500);
}

#[test]
fn stale_if_error_covers_an_unreachable_origin_but_never_a_no_cache_response() {
    let mut origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let with = "/origin/sie?cc=max-age%3D1%2C%20stale-if-error%3D60";
    let no_cache = "/origin/sienc?cc=no-cache%2C%20stale-if-error%3D60&etag=v1";
    let first = get(addr, with);
    assert_eq!(x_cache(&get(addr, no_cache)), "MISS");
    std::thread::sleep(Duration::from_millis(1200));
    origin.set_mode(Mode::Fail);
    // no-cache forbids serving the stored response without the origin (RFC 9111 §4.2.4).
    assert_eq!(get(addr, no_cache).status, 500);
    origin.kill();
    let stale = get(addr, with);
    assert_eq!(
        (stale.status, x_cache(&stale), stale.text()),
        (200, "STALE", first.text())
    );
}

#[test]
fn stale_while_revalidate_is_not_served_to_a_request_that_wants_it_fresh() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/swrf?cc=max-age%3D1%2C%20stale-while-revalidate%3D30";
    let first = get(addr, path);
    std::thread::sleep(Duration::from_millis(1200));
    // A reload (max-age=0) waits for the origin instead of taking the stale copy.
    let reload = req(addr, "GET", path, &[("Cache-Control", "max-age=0")]);
    assert_eq!(reload.status, 200);
    assert_ne!(x_cache(&reload), "STALE");
    assert_ne!(reload.text(), first.text());
    assert_eq!(origin.requests_for("/origin/swrf"), 2);
}

#[test]
fn only_if_cached_never_reaches_the_origin() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/oic?cc=max-age%3D1&etag=v1";
    get(addr, path);
    let only = [("Cache-Control", "only-if-cached")];
    assert_eq!(x_cache(&req(addr, "GET", path, &only)), "HIT");
    std::thread::sleep(Duration::from_millis(1200));
    // Stored but stale: neither served nor revalidated (RFC 9111 §5.2.1.7).
    assert_eq!(req(addr, "GET", path, &only).status, 504);
    assert_eq!(origin.requests_for("/origin/oic"), 1);
}

#[test]
fn a_304_about_another_representation_updates_nothing() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    // Revalidating "v1" draws a 304 that carries "v2".
    let path = "/origin/mm?cc=max-age%3D1&etag=v1&etag304=v2";
    get(addr, path);
    std::thread::sleep(Duration::from_millis(1200));
    let again = get(addr, path);
    assert_eq!(again.status, 200);
    assert_eq!(
        again.text(),
        "origin 3",
        "asked again without conditions after the 304"
    );
    assert_eq!(origin.requests_for("/origin/mm"), 3);
}

#[test]
fn a_changed_vary_replaces_the_stored_variants() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    // The first response has no Vary; from the second on the origin varies on
    // Accept-Language.
    let path = "/origin/vc?cc=max-age%3D1&vary=Accept-Language&vary_from=2";
    let en = [("Accept-Language", "en")];
    assert_eq!(req(addr, "GET", path, &en).text(), "origin 1");
    std::thread::sleep(Duration::from_millis(1200));
    let varied = req(addr, "GET", path, &en);
    assert_eq!(varied.text(), "origin 2 en");
    // The newer response, not the older catch-all, answers the next request for "en".
    let hit = req(addr, "GET", path, &en);
    assert_eq!((x_cache(&hit), hit.text().as_str()), ("HIT", "origin 2 en"));
    assert_eq!(origin.requests_for("/origin/vc"), 2);
}

#[test]
fn concurrent_revalidations_make_one_origin_request() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/rv?cc=max-age%3D1&etag=v1";
    let first = get(addr, path);
    std::thread::sleep(Duration::from_millis(1200));
    origin.set_delay(Duration::from_millis(500));
    let workers: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || get(addr, path)))
        .collect();
    for w in workers {
        let r = w.join().unwrap();
        assert_eq!((r.status, r.text()), (200, first.text()));
    }
    assert_eq!(origin.requests_for("/origin/rv"), 2);
}

#[test]
fn coalesced_waiters_stop_waiting_after_the_timeout() {
    let origin = Backend::start("origin");
    origin.set_delay(Duration::from_millis(1500));
    let (c, addr) = cache(&origin, &["--coalesce-timeout", "200ms"]);
    let workers: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || get(addr, "/origin/slow?cc=max-age%3D60")))
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap().status, 200);
    }
    // Every waiter gave up on the first fetch and asked the origin itself.
    assert_eq!(origin.requests_for("/origin/slow"), 5);
    assert_eq!(
        metric(c.admin, "podkit_cache_coalesced_total", &[]),
        Some(4.0)
    );
}

#[test]
fn the_key_template_decides_which_requests_share_a_response() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &["--key", "$uri"]);
    let first = get(addr, "/origin/key?cc=max-age%3D60&v=1");
    let other_query = get(addr, "/origin/key?cc=max-age%3D60&v=2");
    assert_eq!(
        (x_cache(&other_query), other_query.text()),
        ("HIT", first.text())
    );
    assert_eq!(origin.requests_for("/origin/key"), 1);
}

#[test]
fn cache_sizes_that_cannot_work_exit_2_naming_the_flag() {
    for (args, flag) in [
        (&["--memory", "512KiB"][..], "--memory"),
        (
            &["--memory", "8MiB", "--max-object", "5MiB"][..],
            "--max-object",
        ),
    ] {
        let out = std::process::Command::new(PODKIT)
            .args(["cache", "--upstream", "http://127.0.0.1:1"])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{stderr}");
    }
}

#[test]
fn the_cache_and_rate_limit_stages_run_in_a_proxy_config() {
    let origin = Backend::start("origin");
    let listen = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.yaml");
    std::fs::write(
        &file,
        format!(
            "listeners:\n\
             - listen: {listen}\n\
             \x20 routes:\n\
             \x20 - path: /\n\
             \x20   to: {{ pool: origin }}\n\
             \x20   cache: {{ memory: 16MiB, max_object: 1MiB }}\n\
             \x20   rate_limit: {{ anon: '1/s,burst=3', key: '$http_x_client' }}\n\
             pools:\n\
             \x20 origin:\n\
             \x20   backends: [ {{ url: '{}' }} ]\n",
            origin.url()
        ),
    )
    .unwrap();
    let mut proxy = podkit_testkit::podkit::Podkit::start(
        std::path::Path::new(PODKIT),
        &["proxy", "-c", file.to_str().unwrap()],
    )
    .unwrap();
    proxy
        .wait_ready()
        .unwrap_or_else(|e| panic!("not ready: {e}\n{}", proxy.output()));
    let path = "/origin/yaml?cc=max-age%3D60";
    let ann = [("X-Client", "ann")];
    assert_eq!(x_cache(&req(listen, "GET", path, &ann)), "MISS");
    let hit = req(listen, "GET", path, &ann);
    assert_eq!(x_cache(&hit), "HIT");
    assert_eq!(hit.header("x-ratelimit-limit"), Some("3"));
    assert_eq!(req(listen, "GET", path, &ann).status, 200);
    let limited = req(listen, "GET", path, &ann);
    assert_eq!(limited.status, 429);
    assert!(limited.header("retry-after").is_some());
    assert_eq!(req(listen, "GET", path, &[("X-Client", "bob")]).status, 200);
    assert_eq!(origin.requests_for("/origin/yaml"), 1);
}

#[test]
fn must_revalidate_and_proxy_revalidate_forbid_stale_responses() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let paths = [
        "/origin/mr?cc=max-age%3D1%2C%20must-revalidate%2C%20stale-if-error%3D60",
        "/origin/pr?cc=max-age%3D1%2C%20proxy-revalidate%2C%20stale-if-error%3D60",
    ];
    for path in paths {
        get(addr, path);
    }
    std::thread::sleep(Duration::from_millis(1200));
    // A client that accepts staleness still gets a revalidated response.
    let tolerant = [("Cache-Control", "max-stale=60")];
    for path in paths {
        let fetched = req(addr, "GET", path, &tolerant);
        assert_eq!((fetched.status, x_cache(&fetched)), (200, "MISS"), "{path}");
    }
    std::thread::sleep(Duration::from_millis(1200));
    origin.set_mode(Mode::Fail);
    // And an origin error is passed on rather than covered with a stale copy.
    for path in paths {
        assert_eq!(req(addr, "GET", path, &tolerant).status, 500, "{path}");
    }
}

#[test]
fn age_from_upstream_counts_toward_freshness() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    // Already 100 s old when it arrives, with 60 s of freshness: stale at once.
    let old = "/origin/aged?cc=max-age%3D60&age=100";
    get(addr, old);
    assert_eq!(x_cache(&get(addr, old)), "MISS");
    assert_eq!(origin.requests_for("/origin/aged"), 2);
    // 30 s old with 60 s of freshness: served, its Age counting on from 30.
    let young = "/origin/young?cc=max-age%3D60&age=30";
    get(addr, young);
    let hit = get(addr, young);
    assert_eq!(x_cache(&hit), "HIT");
    let age: u64 = hit.header("age").unwrap().parse().unwrap();
    assert!((30..40).contains(&age), "Age {age}");
}

#[test]
fn head_is_served_from_a_stored_get() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/head?cc=max-age%3D60&size=1000";
    assert_eq!(get(addr, path).body.len(), 1000);
    let head = req(addr, "HEAD", path, &[]);
    assert_eq!((head.status, x_cache(&head)), (200, "HIT"));
    assert_eq!(head.header("content-length"), Some("1000"));
    assert!(head.body.is_empty());
    assert_eq!(origin.requests_for("/origin/head"), 1);
}

#[test]
fn unsafe_methods_invalidate_the_stored_response() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/inv?cc=max-age%3D60";
    get(addr, path);
    assert_eq!(x_cache(&get(addr, path)), "HIT");
    let post = http_request(addr, "POST", path, &[], b"change").unwrap();
    assert_eq!((post.status, x_cache(&post)), (200, "PASS"));
    assert_eq!(x_cache(&get(addr, path)), "MISS");
    // A Location on the same host is invalidated as well.
    let other = "/origin/other?cc=max-age%3D60";
    get(addr, other);
    let loc = "/origin/post?loc=%2Forigin%2Fother%3Fcc%3Dmax-age%253D60";
    http_request(addr, "POST", loc, &[], b"x").unwrap();
    assert_eq!(x_cache(&get(addr, other)), "MISS");
}

#[test]
fn invalidation_follows_content_location_but_never_another_host() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let named = "/origin/cl?cc=max-age%3D60";
    let elsewhere = "/origin/xh?cc=max-age%3D60";
    get(addr, named);
    get(addr, elsewhere);
    let post = "/origin/p1?cloc=%2Forigin%2Fcl%3Fcc%3Dmax-age%253D60";
    http_request(addr, "POST", post, &[], b"x").unwrap();
    assert_eq!(x_cache(&get(addr, named)), "MISS");
    // The same path on another host is another resource: left alone (RFC 9111 §4.4).
    let post = "/origin/p2?loc=http%3A%2F%2Felsewhere.example%2Forigin%2Fxh%3Fcc%3Dmax-age%253D60";
    http_request(addr, "POST", post, &[], b"x").unwrap();
    assert_eq!(x_cache(&get(addr, elsewhere)), "HIT");
}

#[test]
fn invalidation_renders_a_custom_key_for_the_named_target() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &["--key", "$uri"]);
    get(addr, "/origin/ck?cc=max-age%3D60");
    assert_eq!(x_cache(&get(addr, "/origin/ck?cc=max-age%3D60")), "HIT");
    http_request(addr, "POST", "/origin/p3?loc=%2Forigin%2Fck", &[], b"x").unwrap();
    assert_eq!(x_cache(&get(addr, "/origin/ck?cc=max-age%3D60")), "MISS");
}

#[test]
fn requests_with_authorization_are_stored_only_when_the_response_allows() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let auth = [("Authorization", "Bearer alice")];
    let plain = "/origin/auth?cc=max-age%3D60";
    req(addr, "GET", plain, &auth);
    assert_eq!(x_cache(&req(addr, "GET", plain, &auth)), "MISS");
    let public = "/origin/authpub?cc=public%2C%20max-age%3D60";
    req(addr, "GET", public, &auth);
    assert_eq!(x_cache(&req(addr, "GET", public, &auth)), "HIT");
}

#[test]
fn range_requests_do_not_corrupt_the_stored_body() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/range?cc=max-age%3D60&size=5000";
    assert_eq!(get(addr, path).body.len(), 5000);
    let ranged = req(addr, "GET", path, &[("Range", "bytes=0-9")]);
    assert_eq!(x_cache(&ranged), "PASS");
    let full = get(addr, path);
    assert_eq!((x_cache(&full), full.body.len()), ("HIT", 5000));
}

#[test]
fn client_conditionals_get_304_from_the_cache() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    let path = "/origin/cond?cc=max-age%3D60&etag=v7";
    get(addr, path);
    let resp = req(addr, "GET", path, &[("If-None-Match", "\"v7\"")]);
    assert_eq!((resp.status, x_cache(&resp)), (304, "HIT"));
    assert!(resp.body.is_empty());
    assert_eq!(origin.requests_for("/origin/cond"), 1);
    assert_eq!(
        req(
            addr,
            "GET",
            "/origin/none",
            &[("Cache-Control", "only-if-cached")]
        )
        .status,
        504
    );
}

#[test]
fn a_hundred_concurrent_misses_make_one_origin_request() {
    let origin = Backend::start("origin");
    origin.set_delay(Duration::from_millis(500));
    let (c, addr) = cache(&origin, &[]);
    let workers: Vec<_> = (0..100)
        .map(|_| std::thread::spawn(move || get(addr, "/origin/hot?cc=max-age%3D60")))
        .collect();
    let responses: Vec<HttpResponse> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(responses
        .iter()
        .all(|r| r.status == 200 && r.text() == responses[0].text()));
    assert_eq!(origin.requests_for("/origin/hot"), 1);
    let coalesced = metric(c.admin, "podkit_cache_coalesced_total", &[]).unwrap();
    assert!(
        coalesced >= 90.0,
        "{coalesced} requests waited for the first"
    );
}

#[test]
fn coalesced_waiters_fetch_themselves_when_the_response_is_not_storable() {
    let origin = Backend::start("origin");
    origin.set_delay(Duration::from_millis(300));
    let (_c, addr) = cache(&origin, &[]);
    let workers: Vec<_> = (0..20)
        .map(|_| std::thread::spawn(move || get(addr, "/origin/nostore?cc=no-store")))
        .collect();
    for w in workers {
        assert_eq!(w.join().unwrap().status, 200);
    }
    assert_eq!(origin.requests_for("/origin/nostore"), 20);
}

#[test]
fn objects_over_max_object_pass_uncached() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &["--max-object", "1KiB"]);
    get(addr, "/origin/big?cc=max-age%3D60&size=4096");
    assert_eq!(
        x_cache(&get(addr, "/origin/big?cc=max-age%3D60&size=4096")),
        "MISS"
    );
    get(addr, "/origin/small?cc=max-age%3D60&size=100");
    assert_eq!(
        x_cache(&get(addr, "/origin/small?cc=max-age%3D60&size=100")),
        "HIT"
    );
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

/// Requests 96 MiB of distinct objects of `size` bytes, twice over, from a cache of
/// `--memory 32MiB`: the stored bytes stay under the bound, entries are evicted, and RSS
/// grows by no more than the bound plus a fixed overhead.
fn working_set_three_times_the_bound(size: usize) {
    let origin = Backend::start("origin");
    let (mut c, addr) = cache(&origin, &["--memory", "32MiB"]);
    let pid = c.process().pid().unwrap();
    let before = rss_bytes(pid);
    for round in 0..2 {
        for i in 0..(96 << 20) / size {
            let resp = get(addr, &format!("/origin/m{i}?cc=max-age%3D600&size={size}"));
            assert_eq!(resp.body.len(), size, "round {round}");
        }
    }
    let stored = metric(c.admin, "podkit_cache_stored_bytes", &[]).unwrap();
    assert!(stored <= (32u64 << 20) as f64, "stored {stored} bytes");
    assert!(metric(c.admin, "podkit_cache_evictions_total", &[]).unwrap() > 0.0);
    let grown = rss_bytes(pid).saturating_sub(before);
    assert!(
        grown <= (32 << 20) + (24 << 20),
        "RSS grew by {} MiB",
        grown >> 20
    );
}

#[test]
fn memory_stays_bounded_under_a_working_set_three_times_larger() {
    working_set_three_times_the_bound(64 << 10);
}

#[test]
fn memory_stays_bounded_with_large_objects() {
    working_set_three_times_the_bound(512 << 10);
}

#[test]
fn bodies_being_stored_stay_within_their_budget() {
    let origin = Backend::start("origin");
    // --memory 64MiB: bodies on their way into the store may hold 16 MiB at once.
    let (c, addr) = cache(&origin, &["--memory", "64MiB"]);
    let size = 12 << 20;
    let first = format!("/origin/fill-a?cc=max-age%3D60&size={size}");
    let second = format!("/origin/fill-b?cc=max-age%3D60&size={size}");
    // A client that does not read holds the first fill open with its 12 MiB reserved.
    let mut stalled = std::net::TcpStream::connect(addr).unwrap();
    use std::io::{Read, Write};
    write!(stalled, "GET {first} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        metric(c.admin, "podkit_cache_filling_bytes", &[]) == Some(size as f64)
    }));
    // The second still reaches its client, but does not fit the budget: not stored.
    let passed = get(addr, &second);
    assert_eq!((passed.status, passed.body.len()), (200, size));
    assert_eq!(x_cache(&get(addr, &second)), "MISS");
    // Once the first client reads, its fill ends, is stored, and frees the budget.
    let mut sink = vec![0u8; 1 << 20];
    let mut read = 0;
    while read < size {
        let n = stalled.read(&mut sink).unwrap();
        assert!(n > 0, "the first response ended early");
        read += n;
    }
    assert!(eventually(Duration::from_secs(5), || {
        x_cache(&get(addr, &first)) == "HIT"
    }));
    assert_eq!(
        metric(c.admin, "podkit_cache_filling_bytes", &[]),
        Some(0.0)
    );
}

#[test]
fn a_scan_does_not_evict_the_hot_set() {
    let origin = Backend::start("origin");
    let (c, addr) = cache(&origin, &["--memory", "8MiB"]);
    let hot = |i: usize| format!("/origin/hot/{i}?cc=max-age%3D600&size=65536");
    // 16 objects of 64 KiB, asked for a few times each: the working set.
    for _ in 0..3 {
        for i in 0..16 {
            get(addr, &hot(i));
        }
    }
    // A scan of 400 objects asked for once: three times the memory.
    for i in 0..400 {
        get(
            addr,
            &format!("/origin/scan/{i}?cc=max-age%3D600&size=65536"),
        );
    }
    let hits = (0..16)
        .filter(|i| x_cache(&get(addr, &hot(*i))) == "HIT")
        .count();
    assert!(hits >= 14, "{hits} of 16 hot objects survived the scan");
    // The scan itself did not fit.
    let evicted = metric(c.admin, "podkit_cache_evictions_total", &[]).unwrap_or(0.0);
    assert!(evicted >= 200.0, "{evicted} evictions");
}

#[test]
fn large_bodies_are_served_whole() {
    let origin = Backend::start("origin");
    let (_c, addr) = cache(&origin, &[]);
    // Not a multiple of the block size or of the pattern's period.
    let size = (1 << 20) + 4099;
    let path = format!("/origin/large?cc=max-age%3D60&size={size}&pattern=1");
    let expected = podkit_testkit::backend::pattern_body(size);
    let miss = get(addr, &path);
    assert_eq!(x_cache(&miss), "MISS");
    assert!(miss.body == expected, "the miss's body differs");
    for _ in 0..3 {
        let hit = get(addr, &path);
        assert_eq!(x_cache(&hit), "HIT");
        assert!(hit.body == expected, "a hit's body differs");
    }
    let head = req(addr, "HEAD", &path, &[]);
    assert_eq!(x_cache(&head), "HIT");
    assert_eq!(
        head.header("content-length"),
        Some(size.to_string().as_str())
    );
    assert!(head.body.is_empty());
    assert_eq!(origin.requests_for("/origin/large"), 1);
}

/// Large stored bodies are sent by page reference (podkit_core::splice). A body evicted
/// and banned while slow clients are still receiving it must reach them unchanged.
#[test]
fn large_hits_stay_whole_when_evicted_while_being_sent() {
    use std::io::{Read, Write};
    let origin = Backend::start("origin");
    // 8 MiB holds six of the 1 MiB objects; each object's bytes differ from the others'.
    let (c, addr) = cache(&origin, &["--memory", "8MiB"]);
    let size = (1 << 20) + 4099;
    let path = |i: usize| {
        format!(
            "/origin/evicted/{i}?cc=max-age%3D60&size={size}&pattern={}",
            i + 1
        )
    };
    let expected = |i: usize| podkit_testkit::backend::shifted_pattern_body(size, i);
    for i in 0..6 {
        assert_eq!(get(addr, &path(i)).body.len(), size);
        assert_eq!(x_cache(&get(addr, &path(i))), "HIT");
    }
    let (started, heads) = std::sync::mpsc::channel();
    let clients: Vec<_> = (0..6)
        .map(|i| {
            let request = format!(
                "GET {} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
                path(i)
            );
            let started = started.clone();
            std::thread::spawn(move || {
                let mut stream = std::net::TcpStream::connect(addr).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                stream.write_all(request.as_bytes()).unwrap();
                // The head, then nothing for a while: the body waits in the kernel.
                let mut response = vec![0u8; 1024];
                let n = stream.read(&mut response).unwrap();
                response.truncate(n);
                started.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(400));
                stream.read_to_end(&mut response).unwrap();
                response
            })
        })
        .collect();
    for _ in 0..6 {
        heads.recv_timeout(Duration::from_secs(10)).unwrap();
    }
    // Evict and ban every body while the clients above are still being sent theirs.
    for i in 6..18 {
        assert_eq!(get(addr, &path(i)).body.len(), size);
    }
    let ban = http_request(
        c.admin,
        "POST",
        "/cache/ban?prefix=127.0.0.1/origin/",
        &[],
        b"",
    )
    .unwrap();
    assert_eq!(ban.status, 200, "{}", ban.text());
    for (i, client) in clients.into_iter().enumerate() {
        let raw = client.join().unwrap();
        let response = podkit_testkit::probe::parse_response(&raw, false).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(x_cache(&response), "HIT");
        assert_eq!(response.body.len(), size);
        assert!(
            response.body == expected(i),
            "body {i} changed while it was sent"
        );
    }
}

#[test]
fn purge_and_ban_through_the_admin_endpoint() {
    let origin = Backend::start("origin");
    let (c, addr) = cache(&origin, &[]);
    let path = "/origin/purge?cc=max-age%3D60";
    get(addr, path);
    assert_eq!(x_cache(&get(addr, path)), "HIT");
    let key = format!("127.0.0.1{path}");
    let purge = req(
        c.admin,
        "PURGE",
        &format!(
            "/cache/purge?key={}",
            key.replace('%', "%25")
                .replace('?', "%3F")
                .replace('&', "%26")
        ),
        &[],
    );
    assert_eq!(purge.status, 200, "{}", purge.text());
    assert_eq!(x_cache(&get(addr, path)), "MISS");
    // By URL: the key template is rendered for a GET of it.
    let url = format!("http://{addr}{path}");
    let purge_url = |url: &str| {
        let encoded = url
            .replace('%', "%25")
            .replace(':', "%3A")
            .replace('/', "%2F")
            .replace('?', "%3F")
            .replace('&', "%26")
            .replace('=', "%3D");
        req(
            c.admin,
            "PURGE",
            &format!("/cache/purge?url={encoded}"),
            &[],
        )
    };
    assert_eq!(purge_url(&url).status, 200);
    assert_eq!(x_cache(&get(addr, path)), "MISS");
    assert_eq!(
        purge_url(&format!("http://{addr}/origin/never")).status,
        404
    );
    assert_eq!(purge_url("not a url").status, 400);
    for i in 0..3 {
        get(addr, &format!("/origin/ban/{i}?cc=max-age%3D60"));
    }
    let ban = http_request(
        c.admin,
        "POST",
        "/cache/ban?prefix=127.0.0.1/origin/ban/",
        &[],
        b"",
    )
    .unwrap();
    assert!(ban.text().contains("banned 3"), "{}", ban.text());
    assert_eq!(x_cache(&get(addr, "/origin/ban/1?cc=max-age%3D60")), "MISS");
}

#[test]
fn a_purge_during_a_fetch_is_not_undone_by_it() {
    let origin = Backend::start("origin");
    origin.set_delay(Duration::from_millis(600));
    let (c, addr) = cache(&origin, &[]);
    let path = "/origin/racing?cc=max-age%3D60";
    let fetching = std::thread::spawn(move || get(addr, path));
    std::thread::sleep(Duration::from_millis(200));
    let key = "127.0.0.1/origin/racing%3Fcc%3Dmax-age%253D60";
    let purge = req(c.admin, "PURGE", &format!("/cache/purge?key={key}"), &[]);
    assert_eq!(purge.status, 404, "nothing stored yet: {}", purge.text());
    assert_eq!(fetching.join().unwrap().status, 200);
    origin.set_delay(Duration::ZERO);
    // The response fetched before the purge was not stored after it.
    assert_eq!(x_cache(&get(addr, path)), "MISS");
    assert_eq!(x_cache(&get(addr, path)), "HIT");
}

#[test]
fn x_cache_can_be_turned_off_and_metrics_pass_promtool() {
    let origin = Backend::start("origin");
    let (c, addr) = cache(&origin, &["--x-cache", "false"]);
    get(addr, "/origin/x?cc=max-age%3D60");
    let hit = get(addr, "/origin/x?cc=max-age%3D60");
    assert!(hit.header("x-cache").is_none());
    assert_eq!(
        metric(c.admin, "podkit_cache_requests_total", &["outcome=\"hit\""]),
        Some(1.0)
    );
    assert_eq!(metric(c.admin, "podkit_cache_hit_ratio", &[]), Some(0.5));
    assert_promtool_clean(c.admin);
}
