//! Name search over `patient_names` (one entry per patient name, with the birth date), and how
//! often each name occurs there.

use sqlx::{Any, QueryBuilder, Row};

use super::Store;
use crate::domain::search::{NameQuery, Term};
use crate::error::Error;
use carerecord_platform::sql::{finish, push_in};

/// Appends the condition that `column` equals `term`, or starts with it.
fn push_term(builder: &mut QueryBuilder<Any>, column: &str, term: &Term) {
    builder.push(column);
    if term.prefix {
        builder.push(" >= ").push_bind(term.text.clone());
        builder.push(" AND ").push(column).push(" < ");
        builder.push_bind(format!("{}\u{10FFFF}", term.text));
    } else {
        builder.push(" = ").push_bind(term.text.clone());
    }
}

fn push_born_within(builder: &mut QueryBuilder<Any>, from: i64, to: i64) {
    builder.push("n.birth_date BETWEEN ").push_bind(from);
    builder.push(" AND ").push_bind(to);
}

impl Store {
    /// Ids of patients (active or merged: the caller filters on their stored state) with a name
    /// entry that `query` selects, at most `limit`.
    pub async fn name_search(&self, query: &NameQuery, limit: i64) -> Result<Vec<String>, Error> {
        let mut builder =
            QueryBuilder::<Any>::new("SELECT DISTINCT n.patient_id FROM patient_names n WHERE ");
        match query {
            NameQuery::Names {
                family,
                given,
                born_from,
                born_to,
            } => {
                push_term(&mut builder, "n.family", family);
                if let Some(given) = given {
                    builder.push(" AND ");
                    push_term(&mut builder, "n.given", given);
                }
                builder.push(" AND ");
                push_born_within(&mut builder, *born_from, *born_to);
            }
            NameQuery::BornOn(dates) => {
                builder.push("n.birth_date");
                push_in(&mut builder, dates.iter().copied());
            }
            NameQuery::Sounding {
                family,
                codes,
                born_from,
                born_to,
            } => {
                push_born_within(&mut builder, *born_from, *born_to);
                builder.push(" AND (n.family = ").push_bind(family.clone());
                builder.push(" OR n.family_code");
                push_in(&mut builder, codes.iter().cloned());
                builder.push(")");
            }
        }
        builder
            .push(" ORDER BY n.patient_id LIMIT ")
            .push_bind(limit);
        let rows = finish(&mut builder)?.fetch_all(&self.db.pool).await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("patient_id").map_err(Error::from))
            .collect()
    }
}

impl Store {
    /// How many name entries hold each normalised given name, and each family name.
    pub async fn name_counts(&self) -> Result<(Vec<(String, u32)>, Vec<(String, u32)>), Error> {
        let mut out = (Vec::new(), Vec::new());
        for (query, counts) in [
            (
                "SELECT given AS name, COUNT(*) AS n FROM patient_names WHERE given <> '' GROUP BY given",
                &mut out.0,
            ),
            (
                "SELECT family AS name, COUNT(*) AS n FROM patient_names WHERE family <> '' GROUP BY family",
                &mut out.1,
            ),
        ] {
            for row in sqlx::query(query).fetch_all(&self.db.pool).await? {
                let n: i64 = row.try_get("n")?;
                counts.push((row.try_get("name")?, u32::try_from(n).unwrap_or(u32::MAX)));
            }
        }
        Ok(out)
    }
}
