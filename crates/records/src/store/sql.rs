//! Dynamic SQL: built with `sqlx::QueryBuilder`, run through the `Any` driver on either backend.

use sqlx::any::AnyArguments;
use sqlx::query::Query;
use sqlx::{Any, AssertSqlSafe, Execute, QueryBuilder};

/// The query `sql` built, ready to run on either backend. `QueryBuilder<Any>` marks every
/// parameter `?`, which PostgreSQL does not read; both backends read `$1`, `$2`, ..., so the
/// parameters are numbered here (store SQL has no `?` of its own).
pub fn numbered(mut sql: QueryBuilder<Any>) -> Query<'static, Any, AnyArguments> {
    let mut built = sql.build();
    // A query just built holds its arguments: taking them cannot fail.
    let arguments = built.take_arguments().ok().flatten().unwrap_or_default();
    let text = built.sql();
    sqlx::query_with(AssertSqlSafe(number_placeholders(text.as_str())), arguments)
}

fn number_placeholders(text: &str) -> String {
    let mut numbered = String::with_capacity(text.len() + 16);
    let mut count = 0;
    for (i, piece) in text.split('?').enumerate() {
        if i > 0 {
            count += 1;
            numbered.push('$');
            numbered.push_str(&count.to_string());
        }
        numbered.push_str(piece);
    }
    numbered
}

/// Appends `column IN (?, ?, ...)` over `values` (at least one).
pub fn push_in(sql: &mut QueryBuilder<Any>, column: &str, values: &[String]) {
    sql.push(column).push(" IN (");
    let mut list = sql.separated(", ");
    for value in values {
        list.push_bind(value.as_str());
    }
    sql.push(")");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            number_placeholders("SELECT a FROM t WHERE b = ? AND c IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
        assert_eq!(number_placeholders("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn built_queries_keep_their_arguments() {
        let mut sql = QueryBuilder::<Any>::new("SELECT a FROM t WHERE b = ");
        sql.push_bind(7i64).push(" AND ");
        push_in(&mut sql, "c", &["x".into(), "y".into()]);
        let mut query = numbered(sql);
        let arguments = query.take_arguments().unwrap().unwrap();
        assert_eq!(sqlx::Arguments::len(&arguments), 3);
        assert_eq!(
            query.sql().as_str(),
            "SELECT a FROM t WHERE b = $1 AND c IN ($2, $3)"
        );
    }
}
