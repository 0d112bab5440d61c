//! Parquet rows → PostgreSQL binary `COPY … FROM STDIN`: exact for every type the schema module
//! maps (decimals as `numeric` digits, timestamps to the microsecond, bytes as `bytea`, JSON as
//! `jsonb`). The encoding follows the staging column types the SQL builder declares
//! ([`crate::schema::ColumnType::postgres_type`]); a file whose Arrow schema is not the run's is
//! refused before a byte is sent.

use std::ops::Range;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type,
    TimestampMicrosecondType,
};
use arrow_array::{Array, RecordBatch};
use bytes::{BufMut, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::errors::ParquetError;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::error::{Error, Result};
use crate::schema::{ColumnType, TableSchema};
use crate::storage::Bucket;

/// Rows per record batch read from a file.
const BATCH_ROWS: usize = 8192;
/// Days from 1970-01-01 (Arrow) to 2000-01-01 (PostgreSQL).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds from 1970-01-01 to 2000-01-01.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// `jsonb` binary format version.
const JSONB_VERSION: u8 = 1;

/// The binary COPY header: signature, flags, header extension length.
pub fn header() -> Bytes {
    let mut buf = BytesMut::with_capacity(19);
    buf.put_slice(b"PGCOPY\n\xff\r\n\0");
    buf.put_i32(0);
    buf.put_i32(0);
    buf.freeze()
}

/// The binary COPY trailer.
pub fn trailer() -> Bytes {
    Bytes::from_static(&[0xff, 0xff])
}

/// A committed Parquet file of `size` bytes read by ranged GETs: its footer, then one row
/// group's column chunks at a time. A load holds a row group (at most 32 MiB encoded, the
/// writer's `row_group_bytes`), never the whole file.
struct RangedFile {
    bucket: Bucket,
    key: String,
    size: u64,
}

impl AsyncFileReader for RangedFile {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            self.bucket
                .get_range(&self.key, range)
                .await
                .map_err(|err| ParquetError::External(Box::new(err)))
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let metadata = ParquetMetaDataReader::new()
                .load_and_finish(self, size)
                .await?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}

/// Streams the Parquet file `key` (of `size` bytes) of `bucket` and yields its rows encoded as
/// binary COPY tuples, one chunk per record batch. `uri` names the file in errors.
pub async fn stream_file(
    bucket: &Bucket,
    key: &str,
    size: u64,
    schema: &TableSchema,
    uri: &str,
) -> Result<impl Stream<Item = Result<(Bytes, usize)>>> {
    let corrupt = |reason: String| {
        Error::Corrupt {
        uri: uri.to_owned(),
        reason,
        fix: "the run's files were changed after it committed; restore them, or reset the table and sync again".to_owned(),
    }
    };
    let file = RangedFile {
        bucket: bucket.clone(),
        key: key.to_owned(),
        size,
    };
    let builder = ParquetRecordBatchStreamBuilder::new(file)
        .await
        .map_err(|err| {
            read_error(err, |why| {
                corrupt(format!("not a readable Parquet file ({why})"))
            })
        })?;
    let expected = schema.arrow_schema();
    let actual = builder.schema().clone();
    let same_shape = actual.fields().len() == expected.fields().len()
        && actual
            .fields()
            .iter()
            .zip(expected.fields())
            .all(|(a, e)| a.data_type() == e.data_type());
    if !same_shape {
        return Err(corrupt(format!(
            "its columns ({}) are not the run's schema ({})",
            describe(&actual),
            describe(&expected)
        )));
    }
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|err| corrupt(format!("cannot read it ({err})")))?;
    let schema = schema.clone();
    let uri = uri.to_owned();
    Ok(reader.map(move |batch| {
        let batch = batch.map_err(|err| {
            read_error(err, |why| Error::Corrupt {
                uri: uri.clone(),
                reason: format!("cannot decode a row group ({why})"),
                fix: "the file is damaged; restore it, or reset the table and sync again"
                    .to_owned(),
            })
        })?;
        let mut buf = BytesMut::new();
        encode_batch(&batch, &schema, &mut buf)?;
        Ok((buf.freeze(), batch.num_rows()))
    }))
}

/// A reader's error: a ranged read that failed (S3 unreachable, throttled) is the storage error
/// itself; anything else is what `damaged` makes of the reason.
fn read_error(err: ParquetError, damaged: impl FnOnce(String) -> Error) -> Error {
    match err {
        ParquetError::External(inner) => match inner.downcast::<Error>() {
            Ok(storage) => *storage,
            Err(other) => damaged(other.to_string()),
        },
        other => damaged(other.to_string()),
    }
}

fn describe(schema: &arrow_schema::Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Appends `batch`'s rows as binary COPY tuples. The batch's columns are the schema's, in order.
pub fn encode_batch(batch: &RecordBatch, schema: &TableSchema, buf: &mut BytesMut) -> Result<()> {
    let columns = batch.columns();
    let field_count = i16::try_from(columns.len())
        .map_err(|_| Error::Schema("more than 32767 columns cannot be copied".to_owned()))?;
    for row in 0..batch.num_rows() {
        buf.put_i16(field_count);
        for (array, column) in columns.iter().zip(&schema.columns) {
            if array.is_null(row) {
                buf.put_i32(-1);
                continue;
            }
            encode_value(array.as_ref(), row, &column.ty, buf);
        }
    }
    Ok(())
}

fn put_field(buf: &mut BytesMut, bytes: &[u8]) {
    // Arrow offsets are i32, so a value never exceeds i32::MAX bytes.
    buf.put_i32(i32::try_from(bytes.len()).unwrap_or(i32::MAX));
    buf.put_slice(bytes);
}

fn encode_value(array: &dyn Array, row: usize, ty: &ColumnType, buf: &mut BytesMut) {
    match ty {
        ColumnType::Boolean { .. } => {
            buf.put_i32(1);
            buf.put_u8(u8::from(array.as_boolean().value(row)));
        }
        ColumnType::Int16 => {
            buf.put_i32(2);
            buf.put_i16(array.as_primitive::<Int16Type>().value(row));
        }
        ColumnType::Int32 => {
            buf.put_i32(4);
            buf.put_i32(array.as_primitive::<Int32Type>().value(row));
        }
        ColumnType::Int64 => {
            buf.put_i32(8);
            buf.put_i64(array.as_primitive::<Int64Type>().value(row));
        }
        ColumnType::Bits { width } if *width < 64 => {
            buf.put_i32(8);
            buf.put_i64(array.as_primitive::<Int64Type>().value(row));
        }
        ColumnType::Decimal { .. } | ColumnType::Bits { .. } => {
            let decimals = array.as_primitive::<Decimal128Type>();
            let numeric = numeric_binary(decimals.value(row), decimals.scale());
            put_field(buf, &numeric);
        }
        ColumnType::Float32 => {
            buf.put_i32(4);
            buf.put_f32(array.as_primitive::<Float32Type>().value(row));
        }
        ColumnType::Float64 => {
            buf.put_i32(8);
            buf.put_f64(array.as_primitive::<Float64Type>().value(row));
        }
        ColumnType::Date => {
            buf.put_i32(4);
            buf.put_i32(array.as_primitive::<Date32Type>().value(row) - PG_EPOCH_DAYS);
        }
        ColumnType::Timestamp | ColumnType::TimestampTz => {
            buf.put_i32(8);
            buf.put_i64(
                array.as_primitive::<TimestampMicrosecondType>().value(row) - PG_EPOCH_MICROS,
            );
        }
        ColumnType::Text { .. } => put_field(buf, array.as_string::<i32>().value(row).as_bytes()),
        ColumnType::Json => {
            let text = array.as_string::<i32>().value(row).as_bytes();
            buf.put_i32(i32::try_from(text.len() + 1).unwrap_or(i32::MAX));
            buf.put_u8(JSONB_VERSION);
            buf.put_slice(text);
        }
        ColumnType::Binary { .. } => put_field(buf, array.as_binary::<i32>().value(row)),
    }
}

/// PostgreSQL's binary `numeric`: digit count, weight, sign, display scale, then base-10000
/// digits, leading and trailing zero digits stripped.
pub fn numeric_binary(unscaled: i128, scale: i8) -> Vec<u8> {
    let scale = usize::try_from(scale.max(0)).unwrap_or(0);
    let negative = unscaled < 0;
    let mut text = unscaled.unsigned_abs().to_string();
    if text.len() <= scale {
        text = format!("{}{text}", "0".repeat(scale + 1 - text.len()));
    }
    let (integer, fraction) = text.split_at(text.len() - scale);
    let integer = format!("{}{integer}", "0".repeat((4 - integer.len() % 4) % 4));
    let fraction = format!("{fraction}{}", "0".repeat((4 - fraction.len() % 4) % 4));
    let group = |s: &str| -> Vec<i16> {
        s.as_bytes()
            .chunks(4)
            .map(|c| c.iter().fold(0i16, |acc, d| acc * 10 + i16::from(d - b'0')))
            .collect()
    };
    let integer_groups = group(&integer);
    let mut weight = i16::try_from(integer_groups.len()).unwrap_or(i16::MAX) - 1;
    let mut digits: Vec<i16> = integer_groups.into_iter().chain(group(&fraction)).collect();
    let leading = digits.iter().take_while(|d| **d == 0).count();
    digits.drain(..leading);
    weight -= i16::try_from(leading).unwrap_or(0);
    while digits.last() == Some(&0) {
        digits.pop();
    }
    let mut out = Vec::with_capacity(8 + 2 * digits.len());
    let sign: u16 = if negative && !digits.is_empty() {
        0x4000
    } else {
        0
    };
    if digits.is_empty() {
        weight = 0;
    }
    out.extend_from_slice(&i16::try_from(digits.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&i16::try_from(scale).unwrap_or(0).to_be_bytes());
    for digit in digits {
        out.extend_from_slice(&digit.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks(2)
            .map(|c| i16::from_be_bytes([c[0], c[1]]))
            .collect()
    }

    #[test]
    fn numerics_encode_base_10000_digits_around_the_point() {
        // 12345.6700 → digits [1, 2345, 6700], weight 1, scale 4.
        assert_eq!(
            words(&numeric_binary(123_456_700, 4)),
            vec![3, 1, 0, 4, 1, 2345, 6700]
        );
        // -0.05 → [500], weight -1.
        assert_eq!(words(&numeric_binary(-5, 2)), vec![1, -1, 0x4000, 2, 500]);
        // 0 keeps its display scale and no digits.
        assert_eq!(words(&numeric_binary(0, 2)), vec![0, 0, 0, 2]);
        // 10000 → [1], weight 1 (trailing zero digit stripped).
        assert_eq!(words(&numeric_binary(10_000, 0)), vec![1, 1, 0, 0, 1]);
        // The widest: 38 nines with scale 10.
        let widest: i128 = "9".repeat(38).parse().unwrap();
        let encoded = words(&numeric_binary(widest, 10));
        assert_eq!(&encoded[..4], &[10, 6, 0, 10]);
        assert_eq!(encoded[4], 9999);
        assert_eq!(*encoded.last().unwrap(), 9900);
    }
}
