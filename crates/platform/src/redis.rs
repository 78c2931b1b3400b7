//! Outbound Redis through Spin.
//!
//! On Spin every `open` makes a new TCP connection, so a request opens one [`Redis`] and
//! runs all its commands on it, and an instance keeps the connection for the requests it
//! serves after (Spin 4 reuses a WASIp3 instance for up to 128 requests, 16 at a time;
//! the host's Redis connection is multiplexed; a WASIp2 instance serves one request).
//! Every call runs under the request's Redis deadline: a call that misses it is
//! abandoned, and so is its connection, whose reply is still owed (every later call on it
//! fails at once, and the instance opens a new one). A connection that fails a call is
//! dropped the same way. Errors name the operation and never contain the URL's password.

use crate::sdk::redis::{Connection, Error as SpinError};
use crate::time;
use evolve_core::variables::RedisUrl;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use crate::sdk::redis::{RedisParameter, RedisResult};

/// A Redis operation failed. The message has been scrubbed of credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis {operation} failed: {message}")]
pub struct RedisError {
    pub operation: String,
    pub message: String,
}

thread_local! {
    /// This instance's connection to each Redis address.
    static KEPT: RefCell<HashMap<String, Rc<Connection>>> = RefCell::new(HashMap::new());
}

/// A request's Redis connection: the instance's, or a new one.
pub struct Redis {
    connection: Rc<Connection>,
    url: RedisUrl,
    deadline: Duration,
    /// Set when a call missed its deadline: the connection is out of step.
    abandoned: Cell<bool>,
}

impl Redis {
    /// Opens a connection within `deadline`, which then bounds each call on it. The host
    /// must be listed in the component's `allowed_outbound_hosts`.
    pub async fn open(url: &RedisUrl, deadline: Duration) -> Result<Self, RedisError> {
        let kept = KEPT.with(|kept| kept.borrow().get(url.expose()).cloned());
        let connection = match kept {
            Some(connection) => connection,
            None => {
                let opened = match time::within(deadline, Connection::open(url.expose())).await {
                    Some(opened) => Rc::new(opened.map_err(|error| describe(url, "open", error))?),
                    None => return Err(timed_out("open", deadline)),
                };
                KEPT.with(|kept| {
                    kept.borrow_mut()
                        .insert(url.expose().to_owned(), opened.clone())
                });
                opened
            }
        };
        Ok(Redis {
            connection,
            url: url.clone(),
            deadline,
            abandoned: Cell::new(false),
        })
    }

    /// Runs any Redis command; the building block for everything the typed methods
    /// below do not cover (`EVAL`, `XADD`, `SET .. EX NX`).
    pub async fn execute(
        &self,
        command: &str,
        arguments: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, RedisError> {
        if self.abandoned.get() {
            return Err(RedisError {
                operation: command.to_owned(),
                message: "connection abandoned after a call missed its deadline".to_owned(),
            });
        }
        let call = self.connection.execute(command, arguments);
        match time::within(self.deadline, call).await {
            Some(Ok(reply)) => Ok(reply),
            Some(Err(error)) => {
                let error = describe(&self.url, command, error);
                // A script Redis no longer has is sent again; anything else may be the
                // connection's fault, and the next request gets a new one.
                if !crate::script::is_noscript(&error) {
                    self.forget();
                }
                Err(error)
            }
            None => {
                self.abandoned.set(true);
                self.forget();
                Err(timed_out(command, self.deadline))
            }
        }
    }

    /// Stops this instance from using the connection again.
    fn forget(&self) {
        KEPT.with(|kept| {
            let mut kept = kept.borrow_mut();
            if kept
                .get(self.url.expose())
                .is_some_and(|connection| Rc::ptr_eq(connection, &self.connection))
            {
                kept.remove(self.url.expose());
            }
        });
    }

    /// Sends `PING` and returns the round-trip time.
    pub async fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let reply = self.execute("PING", &[]).await?;
        let latency = started.elapsed();
        match reply.as_slice() {
            [RedisResult::Status(status)] if status == "PONG" => Ok(latency),
            [RedisResult::Binary(bytes)] if bytes == b"PONG" => Ok(latency),
            other => Err(RedisError {
                operation: "PING".to_owned(),
                message: format!("unexpected reply {other:?}"),
            }),
        }
    }

    /// All fields of a hash (`HGETALL`); empty when the key does not exist. Field names
    /// and values must be UTF-8.
    pub async fn hgetall(&self, key: &str) -> Result<HashMap<String, String>, RedisError> {
        let reply = self
            .execute(
                "HGETALL",
                &[RedisParameter::Binary(key.as_bytes().to_vec())],
            )
            .await?;
        let bad_reply = |message: String| RedisError {
            operation: "HGETALL".to_owned(),
            message,
        };
        if reply.len() % 2 != 0 {
            return Err(bad_reply(format!(
                "expected field/value pairs, got {} items",
                reply.len()
            )));
        }
        let text = |item: &RedisResult| -> Result<String, RedisError> {
            match item {
                RedisResult::Binary(bytes) => String::from_utf8(bytes.clone()).map_err(|_| {
                    bad_reply(format!("{key} holds a field or value that is not UTF-8"))
                }),
                RedisResult::Status(status) => Ok(status.clone()),
                RedisResult::Int64(number) => Ok(number.to_string()),
                RedisResult::Nil => Err(bad_reply("unexpected nil in the reply".to_owned())),
            }
        };
        reply
            .chunks_exact(2)
            .map(|pair| Ok((text(&pair[0])?, text(&pair[1])?)))
            .collect()
    }
}

fn timed_out(operation: &str, deadline: Duration) -> RedisError {
    RedisError {
        operation: operation.to_owned(),
        message: format!("no answer within {} ms", deadline.as_millis()),
    }
}

fn describe(url: &RedisUrl, operation: &str, error: SpinError) -> RedisError {
    let message = match error {
        SpinError::InvalidAddress => {
            "invalid address (or host not in allowed_outbound_hosts)".to_owned()
        }
        SpinError::TooManyConnections => "too many connections".to_owned(),
        SpinError::TypeError => "reply of an unexpected type".to_owned(),
        SpinError::Other(message) => url.scrub(&message),
    };
    RedisError {
        operation: operation.to_owned(),
        message,
    }
}

fn bin(text: &str) -> RedisParameter {
    RedisParameter::Binary(text.as_bytes().to_vec())
}

fn ms(duration: Duration) -> RedisParameter {
    RedisParameter::Int64(duration.as_millis().max(1) as i64)
}

impl Redis {
    /// `SET key value PX ttl`.
    pub async fn set_px(&self, key: &str, value: &[u8], ttl: Duration) -> Result<(), RedisError> {
        let value = RedisParameter::Binary(value.to_vec());
        self.execute("SET", &[bin(key), value, bin("PX"), ms(ttl)])
            .await?;
        Ok(())
    }

    /// `SET key value NX PX ttl`: true when this call set it.
    pub async fn set_nx_px(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, RedisError> {
        let reply = self
            .execute(
                "SET",
                &[bin(key), bin(value), bin("NX"), bin("PX"), ms(ttl)],
            )
            .await?;
        Ok(!matches!(reply.as_slice(), [] | [RedisResult::Nil]))
    }

    /// `GET key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, RedisError> {
        match self.execute("GET", &[bin(key)]).await?.into_iter().next() {
            Some(RedisResult::Binary(bytes)) => Ok(Some(bytes)),
            _ => Ok(None),
        }
    }

    /// `DEL key...`: how many existed.
    pub async fn del(&self, keys: &[&str]) -> Result<i64, RedisError> {
        let args: Vec<RedisParameter> = keys.iter().map(|k| bin(k)).collect();
        Ok(first_int(&self.execute("DEL", &args).await?))
    }

    /// `HINCRBY key field by`.
    pub async fn hincrby(&self, key: &str, field: &str, by: i64) -> Result<i64, RedisError> {
        let reply = self
            .execute(
                "HINCRBY",
                &[bin(key), bin(field), RedisParameter::Int64(by)],
            )
            .await?;
        Ok(first_int(&reply))
    }

    /// Deletes every key matching `pattern`, walking the keyspace with `SCAN` (never
    /// `KEYS`, which blocks the server) and removing each batch with `UNLINK`.
    pub async fn delete_matching(&self, pattern: &str) -> Result<u64, RedisError> {
        let mut cursor = "0".to_owned();
        let mut deleted = 0u64;
        loop {
            let reply = self
                .execute(
                    "SCAN",
                    &[
                        bin(&cursor),
                        bin("MATCH"),
                        bin(pattern),
                        bin("COUNT"),
                        RedisParameter::Int64(500),
                    ],
                )
                .await?;
            let mut items = reply.into_iter();
            cursor = match items.next() {
                Some(RedisResult::Binary(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
                other => {
                    return Err(RedisError {
                        operation: "SCAN".to_owned(),
                        message: format!("unexpected cursor {other:?}"),
                    })
                }
            };
            let keys: Vec<RedisParameter> = items
                .filter_map(|item| match item {
                    RedisResult::Binary(bytes) => Some(RedisParameter::Binary(bytes)),
                    _ => None,
                })
                .collect();
            if !keys.is_empty() {
                deleted += first_int(&self.execute("UNLINK", &keys).await?).max(0) as u64;
            }
            if cursor == "0" {
                return Ok(deleted);
            }
        }
    }
}

fn first_int(reply: &[RedisResult]) -> i64 {
    match reply.first() {
        Some(RedisResult::Int64(n)) => *n,
        _ => 0,
    }
}

/// A request's Redis connection, opened on first use and at most once: on Spin every
/// `open` is a new TCP connection, so a request that needs Redis several times shares
/// one, and a request that needs none (a cached read) opens none.
pub struct RedisSession {
    url: RedisUrl,
    deadline: Duration,
    connection: std::cell::OnceCell<Result<Redis, RedisError>>,
    /// Set when this Redis missed a deadline on another path (the cache's key-value
    /// store is the same server): the request makes no further call to it.
    given_up: Cell<bool>,
}

impl RedisSession {
    pub fn new(url: RedisUrl, deadline: Duration) -> Self {
        RedisSession {
            url,
            deadline,
            connection: std::cell::OnceCell::new(),
            given_up: Cell::new(false),
        }
    }

    /// The connection, opening it if this is the first use. A failed open is remembered,
    /// so a request does not retry a Redis that is down.
    pub async fn get(&self) -> Result<&Redis, RedisError> {
        if self.given_up.get() {
            return Err(timed_out("open", self.deadline));
        }
        let opened = match self.connection.get() {
            Some(opened) => opened,
            None => {
                let opened = Redis::open(&self.url, self.deadline).await;
                // Another task of the request may have opened one meanwhile: keep that.
                self.connection.get_or_init(|| opened)
            }
        };
        opened.as_ref().map_err(Clone::clone)
    }

    /// Whether Redis failed this request: the open failed or a call missed its deadline
    /// (for reporting degraded answers, and to spare it further calls).
    pub fn failed(&self) -> bool {
        if self.given_up.get() {
            return true;
        }
        match self.connection.get() {
            Some(Err(_)) => true,
            Some(Ok(redis)) => redis.abandoned.get(),
            None => false,
        }
    }

    /// Notes that this Redis missed a deadline elsewhere: no further call is made.
    pub fn give_up(&self) {
        self.given_up.set(true);
    }

    /// How long one call may take.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// The connection if this request has already opened it; never opens one (request
    /// metrics ride on an open connection and are sampled otherwise).
    pub fn if_open(&self) -> Option<&Redis> {
        self.connection.get().and_then(|c| c.as_ref().ok())
    }
}
