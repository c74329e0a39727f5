//! The Redis side of the ambassador: each command goes to the server of its key;
//! multi-key commands are split by server and their replies put back together in the
//! client's order; PING, QUIT, SELECT and AUTH are answered here; commands that cannot be
//! sharded get an error naming them, and the connection goes on.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::backend::{Pending, Reply, ServerError};
use crate::client::{ready, Answer, AnswerFuture, Session};
use crate::pool::Pool;
use crate::redis_cmd::{route, Local, Merge, Route};
use crate::resp::{self, Frame};

/// One client's state.
#[derive(Debug, Default)]
pub struct RedisSession {
    authenticated: bool,
    closed: bool,
}

fn reply(frame: Frame) -> AnswerFuture {
    ready(Answer::Reply(frame.to_bytes()))
}

fn server_error(err: &ServerError) -> Bytes {
    Frame::error(format!("ERR {err}")).to_bytes()
}

impl Session for RedisSession {
    fn requests(&mut self, buf: &mut BytesMut, pool: &Arc<Pool>) -> Vec<AnswerFuture> {
        let mut answers = Vec::new();
        while !self.closed {
            match resp::take(buf) {
                Ok(Some((frame, raw))) => answers.push(self.command(frame, raw, pool)),
                Ok(None) => break,
                Err(err) => {
                    self.closed = true;
                    buf.clear();
                    answers.push(ready(Answer::Close(
                        Frame::error(format!("ERR {err}")).to_bytes(),
                    )));
                }
            }
        }
        if self.closed {
            buf.clear();
        }
        answers
    }
}

impl RedisSession {
    fn command(&mut self, frame: Frame, raw: Bytes, pool: &Arc<Pool>) -> AnswerFuture {
        let Frame::Array(items) = frame else {
            self.closed = true;
            return ready(Answer::Close(
                Frame::error("ERR Protocol error: expected an array of bulk strings").to_bytes(),
            ));
        };
        let mut args = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Frame::Bulk(b) => args.push(b),
                _ => {
                    self.closed = true;
                    return ready(Answer::Close(
                        Frame::error("ERR Protocol error: expected bulk strings").to_bytes(),
                    ));
                }
            }
        }
        let Some(name) = args.first() else {
            return reply(Frame::error("ERR empty command"));
        };
        let route = match route(name, args.len()) {
            Ok(route) => route,
            Err(message) => return reply(Frame::error(message)),
        };
        let needs_auth = pool.config.redis_auth.is_some() && !self.authenticated;
        if needs_auth && !matches!(route, Route::Local(Local::Auth | Local::Quit | Local::Ping)) {
            return reply(Frame::error("NOAUTH Authentication required."));
        }
        match route {
            Route::Local(local) => self.local(local, &args, pool),
            Route::Key => forward(pool, &args[1], raw),
            Route::Eval => {
                let keys = std::str::from_utf8(&args[2])
                    .ok()
                    .and_then(|n| n.parse::<usize>().ok());
                match keys {
                    Some(n) if n >= 1 && args.len() >= 3 + n => forward(pool, &args[3], raw),
                    Some(_) => reply(Frame::error(
                        "ERR EVAL needs at least one key: the ambassador routes a script by its first key",
                    )),
                    None => reply(Frame::error("ERR value is not an integer or out of range")),
                }
            }
            Route::Multi { step, merge } => split(pool, &args, step, merge),
        }
    }

    fn local(&mut self, local: Local, args: &[Bytes], pool: &Pool) -> AnswerFuture {
        match local {
            Local::Ping => match args.get(1) {
                Some(message) => reply(Frame::Bulk(message.clone())),
                None => reply(Frame::Simple(Bytes::from_static(b"PONG"))),
            },
            Local::Quit => {
                self.closed = true;
                ready(Answer::Close(
                    Frame::Simple(Bytes::from_static(b"OK")).to_bytes(),
                ))
            }
            Local::Select => {
                let db = args
                    .get(1)
                    .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok());
                if db == Some(pool.config.redis_db) {
                    reply(Frame::Simple(Bytes::from_static(b"OK")))
                } else {
                    reply(Frame::error(format!(
                        "ERR only database {} is served through this ambassador",
                        pool.config.redis_db
                    )))
                }
            }
            Local::Auth => match (&pool.config.redis_auth, args.get(1)) {
                (None, _) => reply(Frame::error("ERR Client sent AUTH, but no password is set")),
                (Some(expected), Some(given)) if expected.as_bytes() == given.as_ref() => {
                    self.authenticated = true;
                    reply(Frame::Simple(Bytes::from_static(b"OK")))
                }
                _ => {
                    self.authenticated = false;
                    reply(Frame::error("ERR invalid password"))
                }
            },
        }
    }
}

/// Sends the command unchanged to the server of `key`.
fn forward(pool: &Arc<Pool>, key: &[u8], raw: Bytes) -> AnswerFuture {
    match pool.server_for(key) {
        Ok(server) => {
            let pending = server.send(raw, Reply::Redis);
            Box::pin(async move {
                match pending.wait().await {
                    Ok(bytes) => Answer::Reply(bytes),
                    Err(err) => Answer::Reply(server_error(&err)),
                }
            })
        }
        Err(err) => ready(Answer::Reply(server_error(&err))),
    }
}

/// Splits a multi-key command by server and merges the replies.
fn split(pool: &Arc<Pool>, args: &[Bytes], step: usize, merge: Merge) -> AnswerFuture {
    let command = args[0].clone();
    // Server index -> (positions of its keys among the command's keys, its arguments).
    let mut parts: BTreeMap<usize, (Vec<usize>, Vec<Bytes>)> = BTreeMap::new();
    let mut servers = Vec::new();
    for (position, chunk) in args[1..].chunks(step).enumerate() {
        let server = match pool.server_for(&chunk[0]) {
            Ok(server) => server,
            Err(err) => return ready(Answer::Reply(server_error(&err))),
        };
        let index = match servers
            .iter()
            .position(|s: &Arc<crate::backend::Server>| Arc::ptr_eq(s, &server))
        {
            Some(i) => i,
            None => {
                servers.push(server);
                servers.len() - 1
            }
        };
        let entry = parts.entry(index).or_default();
        entry.0.push(position);
        entry.1.extend(chunk.iter().cloned());
    }
    let keys = (args.len() - 1) / step;
    let pending: Vec<(Vec<usize>, Pending)> = parts
        .into_iter()
        .map(|(index, (positions, part_args))| {
            let request =
                Frame::command(std::iter::once(command.clone()).chain(part_args)).to_bytes();
            (positions, servers[index].send(request, Reply::Redis))
        })
        .collect();
    Box::pin(async move {
        let mut values: Vec<Frame> = vec![Frame::Null; keys];
        let mut sum: i64 = 0;
        for (positions, pending) in pending {
            let bytes = match pending.wait().await {
                Ok(bytes) => bytes,
                Err(err) => return Answer::Reply(server_error(&err)),
            };
            let frame = match resp::parse(&bytes) {
                Ok(frame) => frame,
                Err(_) => return Answer::Reply(server_error(&ServerError::Protocol)),
            };
            match (merge, frame) {
                (_, Frame::Error(e)) => return Answer::Reply(Frame::Error(e).to_bytes()),
                (Merge::Values, Frame::Array(items)) if items.len() == positions.len() => {
                    for (position, item) in positions.into_iter().zip(items) {
                        values[position] = item;
                    }
                }
                (Merge::Sum, Frame::Integer(n)) => sum += n,
                (Merge::Ok, Frame::Simple(_)) => {}
                _ => return Answer::Reply(server_error(&ServerError::Protocol)),
            }
        }
        Answer::Reply(match merge {
            Merge::Values => Frame::Array(values).to_bytes(),
            Merge::Sum => Frame::Integer(sum).to_bytes(),
            Merge::Ok => Frame::Simple(Bytes::from_static(b"OK")).to_bytes(),
        })
    })
}
