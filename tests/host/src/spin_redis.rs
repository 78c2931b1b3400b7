//! Spin's outbound Redis: `fermyon:spin/redis@2.0.0` (blocking, WASIp2) and
//! `spin:redis/redis@3.0.0` (async, WASIp3), on a real Redis server.
//!
//! Connections come from a `RedisConnector` (the host's `Services`: a new connection per
//! `open`, as Spin makes). They are multiplexed, as Spin's are: each command's reply is
//! matched to its command, so when a WASIp3 guest drops a pending call (wasmtime then
//! drops the host future) the late reply is read and discarded, and the connection
//! stays usable for the guest's next command.
//!
//! Results of `execute` are flattened into `redis-result`s: nested arrays become one
//! list, simple strings are `status`, bulk strings `binary`, integers `int64`. In v3
//! the replies Spin 4.0.2 refuses (maps, attributes, verbatim strings, pushes) are a
//! type error, as there.

use futures::future::BoxFuture;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;
use std::sync::Arc;
use wasmtime::component::{Accessor, HasData, Resource, ResourceTable};

use crate::bindings::redis::fermyon::spin2_0_0::redis as v2;
use crate::bindings::redis3::spin::redis::redis as v3;
use crate::outbound::AllowedHosts;

/// Makes the connection behind one guest `open`.
pub trait RedisConnector: Send + Sync {
    fn connect<'a>(
        &'a self,
        address: &'a str,
    ) -> BoxFuture<'a, redis::RedisResult<MultiplexedConnection>>;
}

/// The guest's handle on one Redis connection.
pub struct RedisConnection {
    conn: MultiplexedConnection,
}

pub struct RedisState {
    component: String,
    allowed: Arc<AllowedHosts>,
    connector: Arc<dyn RedisConnector>,
    table: ResourceTable,
}

/// Links the Redis interfaces to `RedisState` (WASIp3's through an `Accessor`).
pub struct RedisData;

impl HasData for RedisData {
    type Data<'a> = &'a mut RedisState;
}

/// Why `open` failed, before it is said in an interface's own error type.
#[derive(Debug)]
pub enum OpenError {
    NotAllowed,
    InvalidAddress,
    Connect(redis::RedisError),
}

impl RedisState {
    pub fn new(
        component: &str,
        allowed: Arc<AllowedHosts>,
        connector: Arc<dyn RedisConnector>,
    ) -> Self {
        Self {
            component: component.to_string(),
            allowed,
            connector,
            table: ResourceTable::new(),
        }
    }

    /// What an `open` needs, taken out of the state so the connection is made without
    /// holding it.
    fn opener(&self) -> Opener {
        Opener {
            component: self.component.clone(),
            allowed: self.allowed.clone(),
            connector: self.connector.clone(),
        }
    }

    fn conn(&self, rep: &Resource<RedisConnection>) -> wasmtime::Result<MultiplexedConnection> {
        Ok(self.table.get(rep)?.conn.clone())
    }
}

pub struct Opener {
    component: String,
    allowed: Arc<AllowedHosts>,
    connector: Arc<dyn RedisConnector>,
}

impl Opener {
    pub async fn open(&self, address: &str) -> Result<MultiplexedConnection, OpenError> {
        if !self.allowed.allows(address) {
            tracing::warn!(component = %self.component, "redis address not in allowed_outbound_hosts");
            return Err(OpenError::NotAllowed);
        }
        match self.connector.connect(address).await {
            Ok(conn) => Ok(conn),
            Err(e) if e.kind() == redis::ErrorKind::InvalidClientConfig => {
                Err(OpenError::InvalidAddress)
            }
            Err(e) => Err(OpenError::Connect(e)),
        }
    }
}

// ---- fermyon:spin/redis@2.0.0 ----

type Outcome<T> = wasmtime::Result<Result<T, v2::Error>>;

fn other(e: redis::RedisError) -> v2::Error {
    if e.kind() == redis::ErrorKind::TypeError {
        v2::Error::TypeError
    } else {
        v2::Error::Other(e.to_string())
    }
}

impl v2::Host for RedisState {}

impl v2::HostConnection for RedisState {
    async fn open(&mut self, address: String) -> Outcome<Resource<RedisConnection>> {
        match self.opener().open(&address).await {
            Ok(conn) => Ok(Ok(self.table.push(RedisConnection { conn })?)),
            Err(OpenError::NotAllowed | OpenError::InvalidAddress) => {
                Ok(Err(v2::Error::InvalidAddress))
            }
            Err(OpenError::Connect(e)) => Ok(Err(other(e))),
        }
    }

    async fn publish(
        &mut self,
        rep: Resource<RedisConnection>,
        channel: String,
        payload: v2::Payload,
    ) -> Outcome<()> {
        let mut conn = self.conn(&rep)?;
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
    ) -> Outcome<Option<v2::Payload>> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.get(key).await.map_err(other))
    }

    async fn set(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
        value: v2::Payload,
    ) -> Outcome<()> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.set(key, value).await.map_err(other))
    }

    async fn incr(&mut self, rep: Resource<RedisConnection>, key: String) -> Outcome<i64> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.incr(key, 1).await.map_err(other))
    }

    async fn del(&mut self, rep: Resource<RedisConnection>, keys: Vec<String>) -> Outcome<u32> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.del(keys).await.map_err(other))
    }

    async fn sadd(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.sadd(key, values).await.map_err(other))
    }

    async fn smembers(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
    ) -> Outcome<Vec<String>> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.smembers(key).await.map_err(other))
    }

    async fn srem(
        &mut self,
        rep: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome<u32> {
        let mut conn = self.conn(&rep)?;
        Ok(conn.srem(key, values).await.map_err(other))
    }

    async fn execute(
        &mut self,
        rep: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v2::RedisParameter>,
    ) -> Outcome<Vec<v2::RedisResult>> {
        let mut conn = self.conn(&rep)?;
        let mut cmd = redis::cmd(&command);
        for argument in arguments {
            match argument {
                v2::RedisParameter::Int64(i) => cmd.arg(i),
                v2::RedisParameter::Binary(b) => cmd.arg(b),
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

/// The v2 mapping of a Redis reply onto `redis-result`s.
pub fn flatten(value: redis::Value) -> Vec<v2::RedisResult> {
    fn append(out: &mut Vec<v2::RedisResult>, value: redis::Value) {
        use redis::Value;
        use v2::RedisResult;
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

// ---- spin:redis/redis@3.0.0 ----

type Outcome3<T> = wasmtime::Result<Result<T, v3::Error>>;

fn other3(e: redis::RedisError) -> v3::Error {
    v3::Error::Other(e.to_string())
}

impl v3::Host for RedisState {}

impl v3::HostConnection for RedisState {
    async fn drop(&mut self, rep: Resource<RedisConnection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl RedisData {
    fn conn<T>(
        accessor: &Accessor<T, Self>,
        rep: &Resource<RedisConnection>,
    ) -> wasmtime::Result<MultiplexedConnection> {
        accessor.with(|mut access| access.get().conn(rep))
    }
}

impl v3::HostConnectionWithStore for RedisData {
    async fn open<T>(
        accessor: &Accessor<T, Self>,
        address: String,
    ) -> Outcome3<Resource<RedisConnection>> {
        let opener = accessor.with(|mut access| access.get().opener());
        let conn = match opener.open(&address).await {
            Ok(conn) => conn,
            Err(OpenError::NotAllowed | OpenError::InvalidAddress) => {
                return Ok(Err(v3::Error::InvalidAddress))
            }
            Err(OpenError::Connect(e)) => return Ok(Err(other3(e))),
        };
        accessor.with(|mut access| Ok(Ok(access.get().table.push(RedisConnection { conn })?)))
    }

    async fn publish<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        channel: String,
        payload: v3::Payload,
    ) -> Outcome3<()> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn
            .publish::<_, _, ()>(channel, payload)
            .await
            .map_err(other3))
    }

    async fn get<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        key: String,
    ) -> Outcome3<Option<v3::Payload>> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.get(key).await.map_err(other3))
    }

    async fn set<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        key: String,
        value: v3::Payload,
    ) -> Outcome3<()> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.set(key, value).await.map_err(other3))
    }

    async fn incr<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        key: String,
    ) -> Outcome3<i64> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.incr(key, 1).await.map_err(other3))
    }

    async fn del<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        keys: Vec<String>,
    ) -> Outcome3<u32> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.del(keys).await.map_err(other3))
    }

    async fn sadd<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome3<u32> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.sadd(key, values).await.map_err(|e| {
            if e.kind() == redis::ErrorKind::TypeError {
                v3::Error::TypeError
            } else {
                other3(e)
            }
        }))
    }

    async fn smembers<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        key: String,
    ) -> Outcome3<Vec<String>> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.smembers(key).await.map_err(other3))
    }

    async fn srem<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        key: String,
        values: Vec<String>,
    ) -> Outcome3<u32> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(conn.srem(key, values).await.map_err(other3))
    }

    async fn execute<T>(
        accessor: &Accessor<T, Self>,
        rep: Resource<RedisConnection>,
        command: String,
        arguments: Vec<v3::RedisParameter>,
    ) -> Outcome3<Vec<v3::RedisResult>> {
        let mut conn = Self::conn(accessor, &rep)?;
        Ok(execute3(&mut conn, &command, arguments).await)
    }
}

async fn execute3(
    conn: &mut MultiplexedConnection,
    command: &str,
    arguments: Vec<v3::RedisParameter>,
) -> Result<Vec<v3::RedisResult>, v3::Error> {
    let mut cmd = redis::cmd(command);
    for argument in arguments {
        match argument {
            v3::RedisParameter::Int64(i) => cmd.arg(i),
            v3::RedisParameter::Binary(b) => cmd.arg(b),
        };
    }
    let value: redis::Value = cmd.query_async(conn).await.map_err(other3)?;
    flatten3(value)
        .map_err(|what| v3::Error::Other(format!("Could not convert Redis response: {what}")))
}

/// Spin 4.0.2's mapping of a Redis reply onto v3 `redis-result`s.
fn flatten3(value: redis::Value) -> Result<Vec<v3::RedisResult>, String> {
    fn append(out: &mut Vec<v3::RedisResult>, value: redis::Value) -> Result<(), String> {
        use redis::Value;
        use v3::RedisResult;
        match value {
            Value::Nil => out.push(RedisResult::Nil),
            Value::Int(i) => out.push(RedisResult::Int64(i)),
            Value::BulkString(b) => out.push(RedisResult::Binary(b)),
            Value::SimpleString(s) => out.push(RedisResult::Status(s)),
            Value::Okay => out.push(RedisResult::Status("OK".into())),
            Value::Array(items) | Value::Set(items) => {
                for v in items {
                    append(out, v)?;
                }
            }
            Value::Double(d) => out.push(RedisResult::Binary(d.to_string().into_bytes())),
            Value::Boolean(b) => out.push(RedisResult::Int64(b as i64)),
            Value::BigNumber(n) => out.push(RedisResult::Binary(n.to_string().into_bytes())),
            Value::Map(_) => return Err("Redis Map type is not supported".into()),
            Value::Attribute { .. } => return Err("Redis Attribute type is not supported".into()),
            Value::VerbatimString { .. } => {
                return Err("Redis string with format attribute is not supported".into())
            }
            Value::Push { .. } => return Err("Redis Pub/Sub types are not supported".into()),
            Value::ServerError(e) => return Err(format!("{e:?}")),
        }
        Ok(())
    }
    let mut out = Vec::new();
    append(&mut out, value)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// The test Redis that `scripts/test` starts.
    fn redis_url() -> Option<String> {
        std::env::var("EVOLVE_TEST_REDIS_URL").ok()
    }

    struct Direct;

    impl RedisConnector for Direct {
        fn connect<'a>(
            &'a self,
            address: &'a str,
        ) -> BoxFuture<'a, redis::RedisResult<MultiplexedConnection>> {
            Box::pin(async move {
                redis::Client::open(address)?
                    .get_multiplexed_async_connection()
                    .await
            })
        }
    }

    fn opener(allowed: &[&str]) -> Opener {
        RedisState::new(
            "test",
            Arc::new(AllowedHosts::parse(allowed).unwrap()),
            Arc::new(Direct),
        )
        .opener()
    }

    #[tokio::test]
    async fn addresses_outside_allowed_hosts_are_refused_before_connecting() {
        let o = opener(&["redis://127.0.0.1:1"]);
        assert!(matches!(
            o.open("redis://127.0.0.1:2").await,
            Err(OpenError::NotAllowed)
        ));
        // Allowed but nothing listens: a connection error, not a refusal.
        assert!(matches!(
            o.open("redis://127.0.0.1:1").await,
            Err(OpenError::Connect(_))
        ));
    }

    #[test]
    fn v3_results_flatten_as_spin_4_does() {
        use redis::Value;
        let reply = Value::Array(vec![
            Value::Int(1),
            Value::Array(vec![Value::BulkString(b"a".to_vec()), Value::Nil]),
            Value::Okay,
        ]);
        let out = flatten3(reply).unwrap();
        assert!(matches!(
            out.as_slice(),
            [
                v3::RedisResult::Int64(1),
                v3::RedisResult::Binary(b),
                v3::RedisResult::Nil,
                v3::RedisResult::Status(s),
            ] if b == b"a" && s == "OK"
        ));
        assert!(flatten3(Value::Map(vec![])).is_err());
    }

    /// A guest that gives up on a call drops it mid-flight; the command is already on
    /// the wire. The next command on that connection must get its own reply.
    #[tokio::test]
    async fn a_cancelled_call_leaves_the_connection_usable() {
        let Some(url) = redis_url() else {
            eprintln!("EVOLVE_TEST_REDIS_URL not set: skipped");
            return;
        };
        let host = url::Url::parse(&url).unwrap();
        let allowed = format!(
            "redis://{}:{}",
            host.host_str().unwrap(),
            host.port().unwrap()
        );
        let mut conn = opener(&[&allowed]).open(&url).await.unwrap();
        let key = format!("unit:redis:cancel:{}", std::process::id());
        let _: () = conn.set(&key, "mine").await.unwrap();
        // BLPOP on an empty list answers only after its timeout: cancel it long before.
        let empty = format!("{key}:empty");
        let mut same = conn.clone();
        let blocked = execute3(
            &mut same,
            "BLPOP",
            vec![
                v3::RedisParameter::Binary(empty.into_bytes()),
                v3::RedisParameter::Int64(1),
            ],
        );
        assert!(tokio::time::timeout(Duration::from_millis(100), blocked)
            .await
            .is_err());
        let got: Option<String> = tokio::time::timeout(Duration::from_secs(5), conn.get(&key))
            .await
            .expect("the connection wedged after a cancelled call")
            .unwrap();
        assert_eq!(got.as_deref(), Some("mine"));
        let _: () = conn.del(&key).await.unwrap();
    }
}
