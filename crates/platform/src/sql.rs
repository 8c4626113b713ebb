//! Dynamic SQL, the one way every store builds it: statements whose shape depends on their input
//! (row counts, IN lists, search conditions), built with `sqlx::QueryBuilder` and run on either
//! backend.

use sqlx::any::{AnyArguments, AnyRow};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Execute, QueryBuilder, Row};

use crate::db::Database;

/// The most bind values one statement carries (SQLite allows 32,766; PostgreSQL 65,535).
pub const MAX_BINDS: usize = 30_000;

/// A value of a row to insert.
pub enum Value {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    Blob(Vec<u8>),
}

/// The statement `builder` holds, ready to run. sqlx's `Any` driver writes every bind as `?`, not
/// knowing the backend while the text is built; PostgreSQL wants `$1, $2, ...`, which SQLite reads
/// too. The statements built here hold no `?` of their own outside quotes.
pub fn finish(
    builder: &mut QueryBuilder<Any>,
) -> Result<Query<'static, Any, AnyArguments>, sqlx::Error> {
    let (sql, arguments) = statement(builder)?;
    Ok(sqlx::query_with(AssertSqlSafe(sql), arguments))
}

/// The text (binds numbered) and the bind values of the statement `builder` holds.
fn statement(builder: &mut QueryBuilder<Any>) -> Result<(String, AnyArguments), sqlx::Error> {
    let mut built = builder.build();
    let arguments = built
        .take_arguments()
        .map_err(sqlx::Error::Encode)?
        .unwrap_or_default();
    Ok((number_binds(built.sql().as_str()), arguments))
}

/// A row of either driver, read with the same code: an `AnyRow`, or on PostgreSQL a `PgRow`.
pub trait ReadRow {
    fn text(&self, column: &str) -> Result<String, sqlx::Error>;
    fn opt_text_at(&self, index: usize) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, column: &str) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error>;
    fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error>;
    /// How many columns the row has.
    fn width(&self) -> usize;
}

macro_rules! read_row {
    ($($row:ty),*) => {$(
        impl ReadRow for $row {
            fn text(&self, column: &str) -> Result<String, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_text_at(&self, index: usize) -> Result<Option<String>, sqlx::Error> {
                self.try_get(index)
            }
            fn int(&self, column: &str) -> Result<i64, sqlx::Error> {
                self.try_get(column)
            }
            fn opt_int(&self, column: &str) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(column)
            }
            fn bytes(&self, column: &str) -> Result<Vec<u8>, sqlx::Error> {
                self.try_get(column)
            }
            fn width(&self) -> usize {
                self.len()
            }
        }
    )*};
}

read_row!(AnyRow, PgRow);

/// A value built from one row of either driver.
pub trait DecodeRow: Sized {
    fn decode_row<R: ReadRow>(row: &R) -> Result<Self, sqlx::Error>;
}

/// Runs the SELECT `builder` holds and decodes every row. On PostgreSQL the statement runs on the
/// native driver, with the same binds: `Any` would first copy every value of every row into its
/// own representation and then again into the result, which on a hot read costs more than the
/// decoding itself.
pub async fn fetch_all<T: DecodeRow>(
    db: &Database,
    builder: &mut QueryBuilder<Any>,
) -> Result<Vec<T>, sqlx::Error> {
    let (sql, arguments) = statement(builder)?;
    match &db.postgres {
        Some(postgres) => {
            let arguments: PgArguments = arguments.convert_into().map_err(sqlx::Error::Encode)?;
            let rows = sqlx::query_with(AssertSqlSafe(sql), arguments)
                .fetch_all(postgres)
                .await?;
            rows.iter().map(T::decode_row).collect()
        }
        None => {
            let rows = sqlx::query_with(AssertSqlSafe(sql), arguments)
                .fetch_all(&db.pool)
                .await?;
            rows.iter().map(T::decode_row).collect()
        }
    }
}

/// `sql` with each `?` outside single quotes replaced by `$1`, `$2`, ... in order.
fn number_binds(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + sql.len() / 4);
    let (mut n, mut quoted) = (0, false);
    for c in sql.chars() {
        match c {
            '\'' => {
                quoted = !quoted;
                out.push(c);
            }
            '?' if !quoted => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Appends ` IN (...)` binding `values` (at least one).
pub fn push_in<T>(builder: &mut QueryBuilder<Any>, values: impl IntoIterator<Item = T>)
where
    T: for<'q> sqlx::Encode<'q, Any> + sqlx::Type<Any>,
{
    builder.push(" IN (");
    let mut list = builder.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    list.push_unseparated(")");
}

/// Inserts `rows` with `head` (`INSERT INTO t (a, b)`), in as few statements as the bind limit
/// allows; every row has as many values as `head` names columns.
pub async fn insert_rows(
    conn: &mut AnyConnection,
    head: &str,
    rows: Vec<Vec<Value>>,
) -> Result<(), sqlx::Error> {
    let Some(width) = rows.first().map(Vec::len) else {
        return Ok(());
    };
    let per_statement = (MAX_BINDS / width.max(1)).max(1);
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut builder = QueryBuilder::new(head);
        builder.push(" ");
        builder.push_values(rows.by_ref().take(per_statement), |mut row, values| {
            for value in values {
                match value {
                    Value::Text(s) => row.push_bind(s),
                    Value::OptText(s) => row.push_bind(s),
                    Value::Int(i) => row.push_bind(i),
                    Value::Blob(b) => row.push_bind(b),
                };
            }
        });
        finish(&mut builder)?.execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_are_numbered_outside_quotes() {
        assert_eq!(
            number_binds("SELECT 'a?' FROM t WHERE x = ? AND y IN (?, ?)"),
            "SELECT 'a?' FROM t WHERE x = $1 AND y IN ($2, $3)"
        );
        let mut builder = QueryBuilder::<Any>::new("SELECT x FROM t WHERE x");
        push_in(&mut builder, [String::from("a"), String::from("b")]);
        assert_eq!(
            finish(&mut builder).unwrap().sql().as_str(),
            "SELECT x FROM t WHERE x IN ($1, $2)"
        );
    }
}
