//! The dictionary server of chapter 5's hands-on: `GET /<word>` answers the word's
//! definitions. It loads a real dictionary (WordNet, from Debian's `wordnet-base`) at start
//! and reports ready on `/ready` only once loaded — the readiness the chapter's
//! load-balanced service depends on. Responses may be cached for an hour.
//!
//! Usage: `dictionary-server [--listen ADDR] [--wordnet DIR]` (environment: `LISTEN`,
//! `WORDNET`; defaults `127.0.0.1:8080` and `/usr/share/wordnet`).

mod wordnet;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Dictionary = HashMap<String, Vec<String>>;

fn setting(flag: &str, env: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == flag)
        .and_then(|i| args.get(i + 1).cloned())
        .or_else(|| std::env::var(env).ok())
        .unwrap_or_else(|| default.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let listen: SocketAddr = match setting("--listen", "LISTEN", "127.0.0.1:8080").parse() {
        Ok(addr) => addr,
        Err(err) => {
            eprintln!("dictionary-server: error: --listen: {err}");
            std::process::exit(2);
        }
    };
    let wordnet = setting("--wordnet", "WORDNET", "/usr/share/wordnet");
    let replica = std::env::var("PODKIT_REPLICA").unwrap_or_else(|_| "0".into());
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(err) => {
            eprintln!("dictionary-server: error: --listen {listen}: {err}");
            std::process::exit(1);
        }
    };
    let dictionary: Arc<OnceLock<Dictionary>> = Arc::new(OnceLock::new());
    let loading = dictionary.clone();
    tokio::task::spawn_blocking(
        move || match wordnet::load(std::path::Path::new(&wordnet)) {
            Ok(words) => {
                println!("loaded {} words from {wordnet}", words.len());
                let _ = loading.set(words);
            }
            Err(err) => {
                eprintln!("dictionary-server: error: loading {wordnet}: {err} (install Debian's wordnet-base)");
                std::process::exit(1);
            }
        },
    );
    println!("listening on {listen}");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (dictionary, replica) = (dictionary.clone(), replica.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = answer(&req, dictionary.get(), &replica);
                async move { Ok::<_, Infallible>(response) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn answer(
    req: &Request<Incoming>,
    dictionary: Option<&Dictionary>,
    replica: &str,
) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        if let Ok(value) = header::HeaderValue::from_str(replica) {
            response.headers_mut().insert("x-dictionary-replica", value);
        }
        response
    };
    let path = req.uri().path();
    match (path, dictionary) {
        ("/healthz", _) => reply(StatusCode::OK, "ok\n".into()),
        ("/ready", Some(_)) => reply(StatusCode::OK, "ready\n".into()),
        ("/ready", None) | (_, None) => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "loading the dictionary\n".into(),
        ),
        (_, Some(words)) => {
            let word = wordnet::key(&percent_decode(path.trim_start_matches('/')));
            match words.get(&word) {
                Some(definitions) => {
                    let mut response = reply(StatusCode::OK, definitions.join("\n") + "\n");
                    response.headers_mut().insert(
                        header::CACHE_CONTROL,
                        header::HeaderValue::from_static("public, max-age=3600"),
                    );
                    response
                }
                None => reply(
                    StatusCode::NOT_FOUND,
                    format!("no definition for '{word}'\n"),
                ),
            }
        }
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&bytes[i + 1..i + 3]), 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
