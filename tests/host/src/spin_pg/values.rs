//! Values between Spin's PostgreSQL interface and tokio-postgres, mapped the way Spin
//! maps them: guest parameters encoded for whatever type PostgreSQL expects in their
//! place, and column types and values read back into the interface's own.

use bytes::BytesMut;
use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};

use crate::bindings::postgres::spin::postgres::postgres::{
    Column, DbDataType, DbValue, Error, ParameterValue,
};

pub fn params(params: Vec<ParameterValue>) -> Vec<Param> {
    params.into_iter().map(Param).collect()
}

pub fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

pub fn columns(row: &tokio_postgres::Row) -> Vec<Column> {
    row.columns()
        .iter()
        .map(|c| Column {
            name: c.name().to_string(),
            data_type: data_type(c.type_()),
        })
        .collect()
}

pub fn convert_row(row: &tokio_postgres::Row) -> Result<Vec<DbValue>, Error> {
    row.columns()
        .iter()
        .enumerate()
        .map(|(i, column)| {
            db_value(row, i, column.type_())
                .map_err(|e| Error::ValueConversionFailed(e.to_string()))
        })
        .collect()
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
pub struct Param(ParameterValue);

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
