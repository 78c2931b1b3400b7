//! `spin:postgres/postgres@4.0.0` on a real PostgreSQL server, through a pool per
//! address as Spin keeps one.
//!
//! Column values are mapped the way Spin maps them: integers, floats, bool, text,
//! bytea, date, time, timestamp and timestamptz (as a UTC date-time), uuid, json/jsonb,
//! numeric (as a decimal string), integer and text arrays, NULL as `db-null`; anything
//! else is `unsupported` with its raw bytes.

use bytes::BytesMut;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use wasmtime::component::Resource;

use crate::bindings::postgres::spin::postgres4_0_0::postgres::{
    Column, DbDataType, DbError, DbValue, Error, Host, HostConnection, ParameterValue, QueryError,
    RowSet,
};
use crate::state::State;

/// The guest's handle on one pooled PostgreSQL connection.
pub struct PgConnection {
    client: deadpool_postgres::Object,
}

type Outcome<T> = wasmtime::Result<Result<T, Error>>;

impl Host for State {}

impl HostConnection for State {
    async fn open(&mut self, address: String) -> Outcome<Resource<PgConnection>> {
        if !self.component.allowed_hosts.allows(&address) {
            tracing::warn!(component = %self.component.id, "postgres address not in allowed_outbound_hosts");
            return Ok(Err(Error::ConnectionFailed(format!(
                "address {} is not permitted",
                redact_password(&address)
            ))));
        }
        let pool = match self.services.pg_pool(&address) {
            Ok(pool) => pool,
            Err(e) => return Ok(Err(Error::ConnectionFailed(format!("{e:#}")))),
        };
        match pool.get().await {
            Ok(client) => Ok(Ok(self.table.push(PgConnection { client })?)),
            Err(e) => Ok(Err(Error::ConnectionFailed(e.to_string()))),
        }
    }

    async fn query(
        &mut self,
        rep: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Outcome<RowSet> {
        let client = &self.table.get(&rep)?.client;
        let params: Vec<Param> = params.into_iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let stmt = match client.prepare_cached(&statement).await {
            Ok(s) => s,
            Err(e) => return Ok(Err(query_failed(e))),
        };
        let rows = match client.query(&stmt, &refs).await {
            Ok(rows) => rows,
            Err(e) => return Ok(Err(query_failed(e))),
        };
        let columns: Vec<Column> = stmt
            .columns()
            .iter()
            .map(|c| Column {
                name: c.name().to_string(),
                data_type: data_type(c.type_()),
            })
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut values = Vec::with_capacity(columns.len());
            for (i, column) in stmt.columns().iter().enumerate() {
                match db_value(row, i, column.type_()) {
                    Ok(v) => values.push(v),
                    Err(e) => return Ok(Err(Error::ValueConversionFailed(e.to_string()))),
                }
            }
            out.push(values);
        }
        Ok(Ok(RowSet { columns, rows: out }))
    }

    async fn execute(
        &mut self,
        rep: Resource<PgConnection>,
        statement: String,
        params: Vec<ParameterValue>,
    ) -> Outcome<u64> {
        let client = &self.table.get(&rep)?.client;
        let params: Vec<Param> = params.into_iter().map(Param).collect();
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        Ok(client
            .execute(statement.as_str(), &refs)
            .await
            .map_err(query_failed))
    }

    async fn drop(&mut self, rep: Resource<PgConnection>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

fn query_failed(e: tokio_postgres::Error) -> Error {
    match e.as_db_error() {
        Some(db) => Error::QueryFailed(QueryError::DbError(DbError {
            as_text: e.to_string(),
            severity: db.severity().to_string(),
            code: db.code().code().to_string(),
            message: db.message().to_string(),
            detail: db.detail().map(str::to_string),
            extras: Vec::new(),
        })),
        None => Error::QueryFailed(QueryError::Text(e.to_string())),
    }
}

/// Keeps passwords out of error text the guest might log.
pub fn redact_password(address: &str) -> String {
    match url::Url::parse(address) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => address.to_string(),
    }
}

fn data_type(ty: &Type) -> DbDataType {
    match *ty {
        Type::BOOL => DbDataType::Boolean,
        Type::CHAR => DbDataType::Int8,
        Type::INT2 => DbDataType::Int16,
        Type::INT4 => DbDataType::Int32,
        Type::INT8 => DbDataType::Int64,
        Type::FLOAT4 => DbDataType::Floating32,
        Type::FLOAT8 => DbDataType::Floating64,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => DbDataType::Str,
        Type::BYTEA => DbDataType::Binary,
        Type::DATE => DbDataType::Date,
        Type::TIME => DbDataType::Time,
        Type::TIMESTAMP | Type::TIMESTAMPTZ => DbDataType::Datetime,
        Type::UUID => DbDataType::Uuid,
        Type::JSON | Type::JSONB => DbDataType::Jsonb,
        Type::NUMERIC => DbDataType::Decimal,
        Type::INT4_ARRAY => DbDataType::ArrayInt32,
        Type::INT8_ARRAY => DbDataType::ArrayInt64,
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => DbDataType::ArrayStr,
        _ => DbDataType::Other(ty.name().to_string()),
    }
}

fn datetime(dt: NaiveDateTime) -> DbValue {
    DbValue::Datetime((
        dt.year(),
        dt.month() as u8,
        dt.day() as u8,
        dt.hour() as u8,
        dt.minute() as u8,
        dt.second() as u8,
        dt.nanosecond(),
    ))
}

fn db_value(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> Result<DbValue, tokio_postgres::Error> {
    fn or_null<T>(v: Option<T>, f: impl FnOnce(T) -> DbValue) -> DbValue {
        v.map(f).unwrap_or(DbValue::DbNull)
    }
    Ok(match *ty {
        Type::BOOL => or_null(row.try_get(i)?, DbValue::Boolean),
        Type::CHAR => or_null(row.try_get(i)?, DbValue::Int8),
        Type::INT2 => or_null(row.try_get(i)?, DbValue::Int16),
        Type::INT4 => or_null(row.try_get(i)?, DbValue::Int32),
        Type::INT8 => or_null(row.try_get(i)?, DbValue::Int64),
        Type::FLOAT4 => or_null(row.try_get(i)?, DbValue::Floating32),
        Type::FLOAT8 => or_null(row.try_get(i)?, DbValue::Floating64),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => {
            or_null(row.try_get(i)?, DbValue::Str)
        }
        Type::BYTEA => or_null(row.try_get(i)?, DbValue::Binary),
        Type::DATE => or_null(row.try_get::<_, Option<NaiveDate>>(i)?, |d| {
            DbValue::Date((d.year(), d.month() as u8, d.day() as u8))
        }),
        Type::TIME => or_null(row.try_get::<_, Option<NaiveTime>>(i)?, |t| {
            DbValue::Time((
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
                t.nanosecond(),
            ))
        }),
        Type::TIMESTAMP => or_null(row.try_get::<_, Option<NaiveDateTime>>(i)?, datetime),
        Type::TIMESTAMPTZ => or_null(
            row.try_get::<_, Option<chrono::DateTime<chrono::Utc>>>(i)?,
            |dt| datetime(dt.naive_utc()),
        ),
        Type::UUID => or_null(row.try_get::<_, Option<uuid::Uuid>>(i)?, |u| {
            DbValue::Uuid(u.to_string())
        }),
        Type::JSON | Type::JSONB => or_null(row.try_get::<_, Option<serde_json::Value>>(i)?, |v| {
            DbValue::Jsonb(serde_json::to_vec(&v).unwrap_or_default())
        }),
        Type::NUMERIC => or_null(row.try_get::<_, Option<rust_decimal::Decimal>>(i)?, |d| {
            DbValue::Decimal(d.to_string())
        }),
        Type::INT4_ARRAY => or_null(row.try_get(i)?, DbValue::ArrayInt32),
        Type::INT8_ARRAY => or_null(row.try_get(i)?, DbValue::ArrayInt64),
        Type::TEXT_ARRAY | Type::VARCHAR_ARRAY => or_null(row.try_get(i)?, DbValue::ArrayStr),
        _ => or_null(row.try_get::<_, Option<Raw>>(i)?, |r| {
            DbValue::Unsupported(r.0)
        }),
    })
}

/// Any column's raw bytes, for types with no mapping.
struct Raw(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Raw(raw.to_vec()))
    }
    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A guest parameter, encoded for whatever type PostgreSQL expects in its place.
#[derive(Debug)]
struct Param(ParameterValue);

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Param {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match &self.0 {
            ParameterValue::Boolean(v) => v.to_sql(ty, out),
            ParameterValue::Int8(v) => v.to_sql(ty, out),
            ParameterValue::Int16(v) => v.to_sql(ty, out),
            ParameterValue::Int32(v) => v.to_sql(ty, out),
            ParameterValue::Int64(v) => v.to_sql(ty, out),
            ParameterValue::Floating32(v) => v.to_sql(ty, out),
            ParameterValue::Floating64(v) => v.to_sql(ty, out),
            ParameterValue::Str(v) => v.to_sql(ty, out),
            ParameterValue::Binary(v) => v.to_sql(ty, out),
            ParameterValue::Date((y, m, d)) => NaiveDate::from_ymd_opt(*y, *m as u32, *d as u32)
                .ok_or("invalid date")?
                .to_sql(ty, out),
            ParameterValue::Time((h, m, s, ns)) => {
                NaiveTime::from_hms_nano_opt(*h as u32, *m as u32, *s as u32, *ns)
                    .ok_or("invalid time")?
                    .to_sql(ty, out)
            }
            ParameterValue::Datetime((y, mo, d, h, mi, s, ns)) => {
                let dt = NaiveDate::from_ymd_opt(*y, *mo as u32, *d as u32)
                    .and_then(|d| d.and_hms_nano_opt(*h as u32, *mi as u32, *s as u32, *ns))
                    .ok_or("invalid datetime")?;
                if *ty == Type::TIMESTAMPTZ {
                    dt.and_utc().to_sql(ty, out)
                } else {
                    dt.to_sql(ty, out)
                }
            }
            ParameterValue::Timestamp(secs) => {
                let dt = chrono::DateTime::from_timestamp(*secs, 0).ok_or("invalid timestamp")?;
                if *ty == Type::TIMESTAMPTZ {
                    dt.to_sql(ty, out)
                } else {
                    dt.naive_utc().to_sql(ty, out)
                }
            }
            ParameterValue::Uuid(s) => uuid::Uuid::parse_str(s)?.to_sql(ty, out),
            ParameterValue::Jsonb(bytes) => {
                serde_json::from_slice::<serde_json::Value>(bytes)?.to_sql(ty, out)
            }
            ParameterValue::Decimal(s) => s.parse::<rust_decimal::Decimal>()?.to_sql(ty, out),
            ParameterValue::ArrayInt32(v) => v.to_sql(ty, out),
            ParameterValue::ArrayInt64(v) => v.to_sql(ty, out),
            ParameterValue::ArrayStr(v) => v.to_sql(ty, out),
            ParameterValue::DbNull => Ok(IsNull::Yes),
            other => Err(format!("parameter {other:?} is not supported by this host").into()),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}
