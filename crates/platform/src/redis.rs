//! Outbound Redis through Spin (`fermyon:spin/redis@2.0.0`).
//!
//! On Spin every `open` makes a new connection, so a request opens one [`Redis`] and runs
//! all its commands on it. Errors name the operation and never contain the URL's password.

use evolve_core::config::RedisUrl;
use spin_sdk::redis::{Connection, Error as SpinError};
use std::collections::HashMap;
use std::time::{Duration, Instant};

pub use spin_sdk::redis::{RedisParameter, RedisResult};

/// A Redis operation failed. The message has been scrubbed of credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("redis {operation} failed: {message}")]
pub struct RedisError {
    pub operation: String,
    pub message: String,
}

/// One Redis connection, opened for the duration of a request.
pub struct Redis {
    connection: Connection,
    url: RedisUrl,
}

impl Redis {
    /// Opens a connection. The host must be listed in the component's
    /// `allowed_outbound_hosts`.
    pub fn open(url: &RedisUrl) -> Result<Self, RedisError> {
        let connection =
            Connection::open(url.expose()).map_err(|error| describe(url, "open", error))?;
        Ok(Redis {
            connection,
            url: url.clone(),
        })
    }

    /// Runs any Redis command; the building block for everything the typed methods
    /// below do not cover (`EVAL`, `XADD`, `SET .. EX NX`).
    pub fn execute(
        &self,
        command: &str,
        arguments: &[RedisParameter],
    ) -> Result<Vec<RedisResult>, RedisError> {
        self.connection
            .execute(command, arguments)
            .map_err(|error| describe(&self.url, command, error))
    }

    /// Sends `PING` and returns the round-trip time.
    pub fn ping(&self) -> Result<Duration, RedisError> {
        let started = Instant::now();
        let reply = self.execute("PING", &[])?;
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
    pub fn hgetall(&self, key: &str) -> Result<HashMap<String, String>, RedisError> {
        let reply = self.execute(
            "HGETALL",
            &[RedisParameter::Binary(key.as_bytes().to_vec())],
        )?;
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
