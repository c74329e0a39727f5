//! Which Redis commands the ambassador forwards and how: by their key, split across
//! shards and merged, answered locally, or refused (the connection stays usable).

/// How a command is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// To the server of the key in argument 1.
    Key,
    /// Keys from argument 1, `step` arguments apart, split per server and merged.
    Multi { step: usize, merge: Merge },
    /// EVAL / EVALSHA: by the first key (argument 3), when `numkeys` is at least 1.
    Eval,
    /// Answered by the ambassador.
    Local(Local),
}

/// How the replies of a split command come back together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// MGET: the values, in the client's key order.
    Values,
    /// DEL, UNLINK, EXISTS, TOUCH: the sum of the counts.
    Sum,
    /// MSET: OK when every part was OK.
    Ok,
}

/// Commands the ambassador answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    Ping,
    Quit,
    Select,
    Auth,
}

/// Commands routed by their first key, as twemproxy supports them.
const KEYED: &[&str] = &[
    "DUMP",
    "EXPIRE",
    "EXPIREAT",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PTTL",
    "RESTORE",
    "SORT",
    "TTL",
    "TYPE",
    "APPEND",
    "BITCOUNT",
    "BITPOS",
    "DECR",
    "DECRBY",
    "GET",
    "GETBIT",
    "GETRANGE",
    "GETSET",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "PSETEX",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "STRLEN",
    "HDEL",
    "HEXISTS",
    "HGET",
    "HGETALL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HKEYS",
    "HLEN",
    "HMGET",
    "HMSET",
    "HSET",
    "HSETNX",
    "HVALS",
    "HSCAN",
    "HSTRLEN",
    "LINDEX",
    "LINSERT",
    "LLEN",
    "LPOP",
    "LPUSH",
    "LPUSHX",
    "LRANGE",
    "LREM",
    "LSET",
    "LTRIM",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SCARD",
    "SDIFF",
    "SDIFFSTORE",
    "SINTER",
    "SINTERSTORE",
    "SISMEMBER",
    "SMEMBERS",
    "SMOVE",
    "SPOP",
    "SRANDMEMBER",
    "SREM",
    "SUNION",
    "SUNIONSTORE",
    "SSCAN",
    "ZADD",
    "ZCARD",
    "ZCOUNT",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZLEXCOUNT",
    "ZRANGE",
    "ZRANGEBYLEX",
    "ZRANGEBYSCORE",
    "ZRANK",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "ZREVRANGE",
    "ZREVRANGEBYSCORE",
    "ZREVRANK",
    "ZSCORE",
    "ZUNIONSTORE",
    "ZSCAN",
    "PFADD",
    "PFCOUNT",
    "PFMERGE",
    "GEOADD",
    "GEODIST",
    "GEOHASH",
    "GEORADIUS",
    "GEORADIUSBYMEMBER",
    "GEOPOS",
];

/// How to handle command `name` (any case) called with `argc` words in all; the error is
/// the reply for commands that cannot be sharded or are missing their key.
pub fn route(name: &[u8], argc: usize) -> Result<Route, String> {
    let upper = String::from_utf8_lossy(name).to_ascii_uppercase();
    let route = match upper.as_str() {
        "PING" => Route::Local(Local::Ping),
        "QUIT" => Route::Local(Local::Quit),
        "SELECT" => Route::Local(Local::Select),
        "AUTH" => Route::Local(Local::Auth),
        "MGET" => Route::Multi {
            step: 1,
            merge: Merge::Values,
        },
        "DEL" | "UNLINK" | "EXISTS" | "TOUCH" => Route::Multi {
            step: 1,
            merge: Merge::Sum,
        },
        "MSET" => Route::Multi {
            step: 2,
            merge: Merge::Ok,
        },
        "EVAL" | "EVALSHA" => Route::Eval,
        name if KEYED.contains(&name) => Route::Key,
        name => {
            return Err(format!(
                "ERR unsupported command '{}' (it cannot be sharded)",
                name.to_ascii_lowercase()
            ))
        }
    };
    let needed = match route {
        Route::Key => 2,
        Route::Multi { step, .. } => 1 + step,
        Route::Eval => 4,
        Route::Local(_) => 1,
    };
    if argc < needed {
        return Err(format!(
            "ERR wrong number of arguments for '{}' command",
            upper.to_ascii_lowercase()
        ));
    }
    if let Route::Multi { step: 2, .. } = route {
        if argc % 2 == 0 {
            return Err(format!(
                "ERR wrong number of arguments for '{}' command",
                upper.to_ascii_lowercase()
            ));
        }
    }
    Ok(route)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route(b"get", 2), Ok(Route::Key));
        assert_eq!(
            route(b"MGET", 4),
            Ok(Route::Multi {
                step: 1,
                merge: Merge::Values
            })
        );
        assert_eq!(
            route(b"mset", 5),
            Ok(Route::Multi {
                step: 2,
                merge: Merge::Ok
            })
        );
        assert_eq!(route(b"ping", 1), Ok(Route::Local(Local::Ping)));
        assert_eq!(route(b"evalsha", 4), Ok(Route::Eval));
    }

    #[test]
    fn refusals_name_the_command() {
        assert_eq!(
            route(b"keys", 2),
            Err("ERR unsupported command 'keys' (it cannot be sharded)".into())
        );
        assert!(route(b"MULTI", 1).unwrap_err().contains("'multi'"));
        assert!(route(b"get", 1)
            .unwrap_err()
            .contains("wrong number of arguments"));
        assert!(route(b"mset", 4)
            .unwrap_err()
            .contains("wrong number of arguments"));
    }
}
