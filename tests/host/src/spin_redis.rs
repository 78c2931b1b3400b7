//! `fermyon:spin/redis@2.0.0` on a real Redis server.
//!
//! Results of `execute` are flattened the way Spin flattens them: nested arrays become
//! one list, simple strings are `status`, bulk strings `binary`, integers `int64`.

use redis::AsyncCommands;
use wasmtime::component::Resource;

use crate::bindings::redis::fermyon::spin2_0_0::redis::{
    Error, Host, HostConnection, Payload, RedisParameter, RedisResult,
};
use crate::state::State;

/// The guest's handle on one Redis connection.
pub struct RedisConnection {
    conn: redis::aio::MultiplexedConnection,
}

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

fn other(e: redis::RedisError) -> Error {
    if e.kind() == redis::ErrorKind::TypeError {
        Error::TypeError
    } else {
        Error::Other(e.to_string())
    }
}

impl State {
    fn redis_conn(
        &mut self,
        rep: &Resource<RedisConnection>,
    ) -> wasmtime::Result<redis::aio::MultiplexedConnection> {
        Ok(self.table.get(rep)?.conn.clone())
    }
}

impl Host for State {}

impl HostConnection for State {
    async fn open(&mut self, address: String) -> Outcome<Resource<RedisConnection>> {
        if !self.component.allowed_hosts.allows(&address) {
            tracing::warn!(component = %self.component.id, "redis address not in allowed_outbound_hosts");
            return Ok(Err(Error::InvalidAddress));
        }
        match self.services.redis_open(&address).await {
            Ok(conn) => Ok(Ok(self.table.push(RedisConnection { conn })?)),
            Err(e) if e.kind() == redis::ErrorKind::InvalidClientConfig => {
                Ok(Err(Error::InvalidAddress))
            }
            Err(e) => Ok(Err(other(e))),
        }
    }

    async fn publish(
        &mut self,
        rep: Resource<RedisConnection>,
        channel: String,
        payload: Payload,
    ) -> Outcome<()> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn
            .publish::<_, _, i64>(channel, payload)
            .await
            .map(|_| ())
            .map_err(other))
    }

    async fn get(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Option<Payload>> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.get(key).await.map_err(other))
    }

    async fn set(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
        value: Payload,
    ) -> Outcome<()> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.set(key, value).await.map_err(other))
    }

    async fn incr(&mut self, rep: Resource<RedisConnection>, key: String) -> Outcome<i64> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.incr(key, 1).await.map_err(other))
    }

    async fn del(&mut self, rep: Resource<RedisConnection>, keys: Vec<String>) -> Outcome<u32> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.del(keys).await.map_err(other))
    }

    async fn sadd(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.sadd(key, values).await.map_err(other))
    }

    async fn smembers(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Vec<String>> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.smembers(key).await.map_err(other))
    }

    async fn srem(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        let mut conn = self.redis_conn(&rep)?;
        Ok(conn.srem(key, values).await.map_err(other))
    }

    async fn execute(
        &mut self,
        rep: Resource<RedisConnection>,
        command: String,
        arguments: Vec<RedisParameter>,
    ) -> Outcome<Vec<RedisResult>> {
        let mut conn = self.redis_conn(&rep)?;
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                RedisParameter::Int64(i) => cmd.arg(i),
                RedisParameter::Binary(b) => cmd.arg(b),
            };
        }
        let value: redis::RedisResult<redis::Value> = cmd.query_async(&mut conn).await;
        Ok(value.map(flatten).map_err(other))
    }

    async fn drop(&mut self, rep: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

/// Spin's mapping of a Redis reply onto `redis-result`s.
pub fn flatten(value: redis::Value) -> Vec<RedisResult> {
    fn append(out: &mut Vec<RedisResult>, value: redis::Value) {
        use redis::Value;
        match value {
            Value::Nil => out.push(RedisResult::Nil),
            Value::Int(i) => out.push(RedisResult::Int64(i)),
            Value::BulkString(b) => out.push(RedisResult::Binary(b)),
            Value::SimpleString(s) => out.push(RedisResult::Status(s)),
            Value::Okay => out.push(RedisResult::Status("OK".into())),
            Value::Array(items) | Value::Set(items) => {
                items.into_iter().for_each(|v| append(out, v))
            }
            Value::Map(pairs) => pairs.into_iter().for_each(|(k, v)| {
                append(out, k);
                append(out, v);
            }),
            Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
            Value::Boolean(b) => out.push(RedisResult::Int64(b as i64)),
            Value::VerbatimString { text, .. } => out.push(RedisResult::Binary(text.into_bytes())),
            Value::BigNumber(n) => out.push(RedisResult::Binary(n.to_string().into_bytes())),
            Value::Attribute { data, .. } => append(out, *data),
            Value::Push { data, .. } => data.into_iter().for_each(|v| append(out, v)),
            Value::ServerError(e) => out.push(RedisResult::Status(format!("{e:?}"))),
        }
    }
    let mut out = Vec::new();
    append(&mut out, value);
    out
}
