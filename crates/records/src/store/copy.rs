//! Rows in PostgreSQL's binary COPY format, for bulk writes with `COPY … FROM STDIN (FORMAT
//! binary)`: the server reads each value as it is stored, with no parsing. Text must be valid
//! UTF-8 without NUL (PostgreSQL checks it, as it does for parameters); integers are `bigint`.

use sqlx::postgres::PgConnection;

/// The signature, flags and header extension length that open every binary COPY stream.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

/// A COPY stream being built; [`CopyRows::finish`] gives the bytes to send.
pub struct CopyRows {
    buf: Vec<u8>,
    columns: i16,
    /// Values still expected in the current row: a row of the wrong width is a bug.
    missing: i16,
}

impl CopyRows {
    pub fn new(columns: i16, capacity: usize) -> CopyRows {
        let mut buf = Vec::with_capacity(HEADER.len() + capacity);
        buf.extend_from_slice(HEADER);
        CopyRows {
            buf,
            columns,
            missing: 0,
        }
    }

    /// Starts a row; its values follow in the column order of the COPY statement.
    pub fn row(&mut self) -> &mut Self {
        debug_assert_eq!(self.missing, 0, "the previous row is incomplete");
        self.buf.extend_from_slice(&self.columns.to_be_bytes());
        self.missing = self.columns;
        self
    }

    /// The stream with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        debug_assert_eq!(self.missing, 0, "the last row is incomplete");
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// Sends `rows` with a `COPY ... FROM STDIN (FORMAT binary)` statement.
pub async fn copy_in(
    conn: &mut PgConnection,
    statement: &'static str,
    rows: CopyRows,
) -> Result<u64, sqlx::Error> {
    let mut copy = conn.copy_in_raw(statement).await?;
    copy.send(rows.finish()).await?;
    copy.finish().await
}

/// Where the values of a row go, in column order: a COPY row here, bind parameters elsewhere.
pub trait Columns {
    fn text(&mut self, value: &str) -> &mut Self;
    fn bytes(&mut self, value: &[u8]) -> &mut Self;
    fn int(&mut self, value: i64) -> &mut Self;
    fn optional_int(&mut self, value: Option<i64>) -> &mut Self;
}

impl Columns for CopyRows {
    fn bytes(&mut self, value: &[u8]) -> &mut Self {
        // A value over 1 GiB cannot be stored at all; payloads are limited far below.
        let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend_from_slice(value);
        self.missing -= 1;
        self
    }

    fn text(&mut self, value: &str) -> &mut Self {
        Columns::bytes(self, value.as_bytes())
    }

    fn int(&mut self, value: i64) -> &mut Self {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&value.to_be_bytes());
        self.missing -= 1;
        self
    }

    fn optional_int(&mut self, value: Option<i64>) -> &mut Self {
        match value {
            Some(value) => Columns::int(self, value),
            None => {
                self.buf.extend_from_slice(&(-1i32).to_be_bytes());
                self.missing -= 1;
                self
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_framed_as_postgresql_reads_them() {
        let mut rows = CopyRows::new(3, 64);
        rows.row().text("é").int(-2).optional_int(None);
        let bytes = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // flags, extension length
        expected.extend_from_slice(&[0, 3]); // three values
        expected.extend_from_slice(&[0, 0, 0, 2, 0xc3, 0xa9]); // "é" in UTF-8
        expected.extend_from_slice(&[0, 0, 0, 8, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe]);
        expected.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        expected.extend_from_slice(&[0xff, 0xff]); // trailer
        assert_eq!(bytes, expected);
    }

    #[test]
    fn an_empty_stream_is_header_and_trailer() {
        assert_eq!(CopyRows::new(1, 0).finish().len(), HEADER.len() + 2);
    }
}
