//! The spin-sdk 5.2 (WASIp2) backend. Host calls are synchronous: each future below
//! finishes on its first poll, and nothing can interrupt a call the host has not answered.

pub mod cron;
pub mod http;
pub mod outbound;

pub use spin_sdk;

use std::future::Future;
use std::time::Duration;

/// Outbound Redis (`fermyon:spin/redis@2.0.0`).
pub mod redis {
    pub use spin_sdk::redis::{Error, RedisParameter, RedisResult};

    pub struct Connection(spin_sdk::redis::Connection);

    impl Connection {
        pub async fn open(address: &str) -> Result<Connection, Error> {
            spin_sdk::redis::Connection::open(address).map(Connection)
        }

        pub async fn execute(
            &self,
            command: &str,
            arguments: &[RedisParameter],
        ) -> Result<Vec<RedisResult>, Error> {
            self.0.execute(command, arguments)
        }
    }
}

/// Outbound PostgreSQL (`spin:postgres/postgres@4.0.0`).
pub mod pg {
    use evolve_core::sql;
    pub use spin_sdk::pg4::{DbValue, Decode, ParameterValue, PgError, QueryError};

    pub struct Connection(spin_sdk::pg4::Connection);

    impl Connection {
        pub async fn open(address: &str) -> Result<Connection, PgError> {
            spin_sdk::pg4::Connection::open(address).map(Connection)
        }

        /// The column names and rows of a query.
        ///
        /// Spin 4.0's synchronous `query` never returns when a query yields no rows
        /// (it waits for column types that only a first row carries), so every query
        /// is sent through `sql::at_least_one_row` and the marker row taken off here.
        pub async fn query(
            &self,
            statement: &str,
            params: &[ParameterValue],
        ) -> Result<(Vec<String>, Vec<Vec<DbValue>>), PgError> {
            let set = self.0.query(&sql::at_least_one_row(statement), params)?;
            let mut columns: Vec<String> = set.columns.into_iter().map(|c| c.name).collect();
            columns.pop();
            let rows = set
                .rows
                .into_iter()
                .filter_map(|mut row| match row.pop() {
                    Some(DbValue::Boolean(true)) => Some(row),
                    _ => None,
                })
                .collect();
            Ok((columns, rows))
        }

        pub async fn execute(
            &self,
            statement: &str,
            params: &[ParameterValue],
        ) -> Result<u64, PgError> {
            self.0.execute(statement, params)
        }
    }

    /// A decode failure as the interface's own error.
    pub fn decode_error(error: spin_sdk::pg4::Error) -> PgError {
        match error {
            spin_sdk::pg4::Error::PgError(error) => error,
            spin_sdk::pg4::Error::Decode(message) => PgError::ValueConversionFailed(message),
        }
    }
}

/// Spin key-value stores (`fermyon:spin/key-value@2.0.0`).
pub mod kv {
    pub struct Store(spin_sdk::key_value::Store);

    impl Store {
        pub async fn open(label: &str) -> Result<Store, String> {
            spin_sdk::key_value::Store::open(label)
                .map(Store)
                .map_err(|e| e.to_string())
        }

        pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, String> {
            self.0.get(key).map_err(|e| e.to_string())
        }
    }
}

/// Spin variables (`fermyon:spin/variables@2.0.0`).
pub mod variables {
    pub use spin_sdk::variables::Error;

    pub async fn get(name: &str) -> Result<String, Error> {
        spin_sdk::variables::get(name)
    }
}

/// Blocks the instance for `duration`: a WASIp2 component has one thread and no timer
/// it could await.
pub async fn sleep(duration: Duration) {
    let nanos = duration.as_nanos().min(u128::from(u64::MAX)) as u64;
    wasi::clocks::monotonic_clock::subscribe_duration(nanos).block();
}

/// Runs `call` to its end: a WASIp2 host call cannot be abandoned, so there is no
/// deadline to apply. Always `Some`.
pub async fn within<T>(_deadline: Duration, call: impl Future<Output = T>) -> Option<T> {
    Some(call.await)
}

/// 64 random bits from the host.
pub fn random_u64() -> u64 {
    wasi::random::random::get_random_u64()
}

/// Runs a future to completion on the SDK's executor (cron handlers are synchronous).
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    spin_sdk::http::run(future)
}
