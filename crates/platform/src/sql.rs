//! Dynamic SQL, the one way every store builds it: statements whose shape depends on their input
//! (row counts, IN lists, search conditions), built with `sqlx::QueryBuilder` and run on either
//! backend.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, AssertSqlSafe, Execute, QueryBuilder};

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
    let mut built = builder.build();
    let arguments = built
        .take_arguments()
        .map_err(sqlx::Error::Encode)?
        .unwrap_or_default();
    let sql = number_binds(built.sql().as_str());
    Ok(sqlx::query_with(AssertSqlSafe(sql), arguments))
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
