//! The spin-sdk 6 (WASIp3) backend for Spin 4. Host calls are async: a call raced
//! against a timer and dropped is cancelled in the host (wit-bindgen cancels the
//! subtask, wasmtime aborts the host future), so a hung dependency costs a request its
//! deadline and no more.

pub mod cron;
pub mod http;
pub mod outbound;

pub use spin_sdk6 as spin_sdk;

use futures::future::{select, Either};
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

/// Outbound Redis (`spin:redis/redis@3.0.0`).
pub mod redis {
    pub use spin_sdk6::redis::{Error, RedisParameter, RedisResult};

    pub struct Connection(spin_sdk6::redis::Connection);

    impl Connection {
        pub async fn open(address: &str) -> Result<Connection, Error> {
            spin_sdk6::redis::Connection::open(address)
                .await
                .map(Connection)
        }

        pub async fn execute(
            &self,
            command: &str,
            arguments: &[RedisParameter],
        ) -> Result<Vec<RedisResult>, Error> {
            self.0.execute(command, arguments.to_vec()).await
        }
    }
}

/// Outbound PostgreSQL (`spin:postgres/postgres@4.2.0`, the async functions).
pub mod pg {
    pub use spin_sdk6::pg::{DbValue, Decode, ParameterValue, PgError, QueryError};

    pub struct Connection(spin_sdk6::pg::Connection);

    impl Connection {
        pub async fn open(address: &str) -> Result<Connection, PgError> {
            spin_sdk6::pg::Connection::open(address)
                .await
                .map(Connection)
                .map_err(decode_error)
        }

        /// The column names and rows of a query, read to the end of the row stream.
        pub async fn query(
            &self,
            statement: &str,
            params: &[ParameterValue],
        ) -> Result<(Vec<String>, Vec<Vec<DbValue>>), PgError> {
            let mut result = self
                .0
                .query(statement, params.to_vec())
                .await
                .map_err(decode_error)?;
            let columns = result.columns().iter().map(|c| c.name.clone()).collect();
            let mut rows = Vec::new();
            while let Some(row) = result.rows().next().await {
                rows.push(row);
            }
            result.result().await.map_err(decode_error)?;
            Ok((columns, rows))
        }

        pub async fn execute(
            &self,
            statement: &str,
            params: &[ParameterValue],
        ) -> Result<u64, PgError> {
            self.0
                .execute(statement, params.to_vec())
                .await
                .map_err(decode_error)
        }
    }

    /// A decode failure as the interface's own error.
    pub fn decode_error(error: spin_sdk6::pg::Error) -> PgError {
        match error {
            spin_sdk6::pg::Error::PgError(error) => error,
            spin_sdk6::pg::Error::Decode(message) => PgError::ValueConversionFailed(message),
        }
    }
}

/// Spin key-value stores (`spin:key-value/key-value@3.0.0`).
pub mod kv {
    pub struct Store(spin_sdk6::key_value::Store);

    impl Store {
        pub async fn open(label: &str) -> Result<Store, String> {
            spin_sdk6::key_value::Store::open(label)
                .await
                .map(Store)
                .map_err(|e| e.to_string())
        }

        pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            self.0.get(key).await.map_err(|e| e.to_string())
        }
    }
}

/// Spin variables (`spin:variables/variables@3.0.0`).
pub mod variables {
    pub use spin_sdk6::variables::Error;

    pub async fn get(name: &str) -> Result<String, Error> {
        spin_sdk6::variables::get(name).await
    }
}

/// Waits for `duration` without holding the instance: other requests on a reused
/// instance go on meanwhile.
pub async fn sleep(duration: Duration) {
    spin_sdk6::time::sleep(duration).await
}

/// `call`'s output, or `None` when `deadline` passes first; the call is then dropped,
/// which cancels it in the host.
pub async fn within<T>(deadline: Duration, call: impl Future<Output = T>) -> Option<T> {
    let call = pin!(call);
    let timer = pin!(sleep(deadline));
    match select(call, timer).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}

/// 64 random bits from the host.
pub fn random_u64() -> u64 {
    spin_sdk6::wasip3::random::random::get_random_u64()
}

/// Starts `task` beside the current one; it may outlive the export's return value (the
/// instance lives until every task is done).
pub fn spawn(task: impl Future<Output = ()> + 'static) {
    spin_sdk6::wasip3::spawn(task)
}
