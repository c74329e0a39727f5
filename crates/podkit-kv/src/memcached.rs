//! The memcache side of the ambassador: `get`/`gets` split by server and reassembled in
//! the client's key order; every other command goes whole to the server of its key;
//! `noreply` requests are sent without waiting for an answer.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::backend::{Pending, Reply, ServerError};
use crate::client::{ready, Answer, AnswerFuture, Session};
use crate::memcache::{self, Error, Request};
use crate::pool::Pool;

/// One client's state.
#[derive(Debug, Default)]
pub struct MemcacheSession {
    closed: bool,
}

fn server_error(err: &ServerError) -> Bytes {
    Bytes::from(format!("SERVER_ERROR {err}\r\n"))
}

impl Session for MemcacheSession {
    fn requests(&mut self, buf: &mut BytesMut, pool: &Arc<Pool>) -> Vec<AnswerFuture> {
        let mut answers = Vec::new();
        while !self.closed {
            match memcache::take_request(buf) {
                Ok(Some(request)) => answers.push(self.request(request, pool)),
                Ok(None) => break,
                Err(Error::Unknown) => {
                    answers.push(ready(Answer::Reply(Bytes::from_static(b"ERROR\r\n"))))
                }
                Err(err) => {
                    self.closed = true;
                    answers.push(ready(Answer::Close(Bytes::from(format!("{err}\r\n")))));
                }
            }
        }
        if self.closed {
            buf.clear();
        }
        answers
    }
}

impl MemcacheSession {
    fn request(&mut self, request: Request, pool: &Arc<Pool>) -> AnswerFuture {
        match request {
            Request::Quit => {
                self.closed = true;
                ready(Answer::Close(Bytes::new()))
            }
            Request::Version => match pool.servers.first() {
                Some(server) => {
                    wait_reply(server.send(Bytes::from_static(b"version\r\n"), Reply::MemcacheLine))
                }
                None => ready(Answer::Reply(server_error(&ServerError::NoServer))),
            },
            Request::Keyed { key, noreply, raw } => match pool.server_for(&key) {
                Ok(server) if noreply => {
                    let _ = server.send(raw, Reply::None);
                    ready(Answer::Silent)
                }
                Ok(server) => wait_reply(server.send(raw, Reply::MemcacheLine)),
                Err(err) if noreply => {
                    tracing::debug!(error = %err, "noreply request dropped");
                    ready(Answer::Silent)
                }
                Err(err) => ready(Answer::Reply(server_error(&err))),
            },
            Request::Get { gets, keys } => get(pool, gets, keys),
        }
    }
}

/// The server's reply, passed on as it is; a failure becomes a `SERVER_ERROR` line.
fn wait_reply(pending: Pending) -> AnswerFuture {
    Box::pin(async move {
        match pending.wait().await {
            Ok(bytes) => Answer::Reply(bytes),
            Err(err) => Answer::Reply(server_error(&err)),
        }
    })
}

/// Splits a `get` by server; the values come back in the client's key order.
fn get(pool: &Arc<Pool>, gets: bool, keys: Vec<Bytes>) -> AnswerFuture {
    // Each key's server, as an index into `servers`.
    let mut servers: Vec<Arc<crate::backend::Server>> = Vec::new();
    let mut placed: Vec<usize> = Vec::with_capacity(keys.len());
    for key in &keys {
        let server = match pool.server_for(key) {
            Ok(server) => server,
            Err(err) => return ready(Answer::Reply(server_error(&err))),
        };
        let index = match servers.iter().position(|s| Arc::ptr_eq(s, &server)) {
            Some(i) => i,
            None => {
                servers.push(server);
                servers.len() - 1
            }
        };
        placed.push(index);
    }
    let verb: &[u8] = if gets { b"gets" } else { b"get" };
    if servers.len() == 1 {
        // One server holds every key: its reply is already in the client's key order.
        return wait_reply(servers[0].send(get_request(verb, &keys), Reply::MemcacheGet));
    }
    let pending: Vec<Pending> = servers
        .iter()
        .enumerate()
        .map(|(index, server)| {
            let part: Vec<Bytes> = keys
                .iter()
                .zip(&placed)
                .filter(|(_, &at)| at == index)
                .map(|(key, _)| key.clone())
                .collect();
            server.send(get_request(verb, &part), Reply::MemcacheGet)
        })
        .collect();
    Box::pin(async move {
        let mut found: HashMap<Bytes, Bytes> = HashMap::new();
        for pending in pending {
            let reply = match pending.wait().await {
                Ok(reply) => reply,
                Err(err) => return Answer::Reply(server_error(&err)),
            };
            if !reply.starts_with(b"VALUE ") && !reply.starts_with(b"END") {
                // An error line from the server.
                return Answer::Reply(reply);
            }
            for (key, block) in memcache::values(&reply) {
                found.insert(key, block);
            }
        }
        let mut out = BytesMut::new();
        for key in &keys {
            if let Some(block) = found.get(key) {
                out.extend_from_slice(block);
            }
        }
        out.extend_from_slice(b"END\r\n");
        Answer::Reply(out.freeze())
    })
}

/// `get k1 k2 ...` (or `gets`) for a server.
fn get_request(verb: &[u8], keys: &[Bytes]) -> Bytes {
    let mut request =
        BytesMut::with_capacity(verb.len() + 2 + keys.iter().map(|k| k.len() + 1).sum::<usize>());
    request.extend_from_slice(verb);
    for key in keys {
        request.extend_from_slice(b" ");
        request.extend_from_slice(key);
    }
    request.extend_from_slice(b"\r\n");
    request.freeze()
}
