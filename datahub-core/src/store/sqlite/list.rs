//! The SQLite side of listing connections: the filters, visibility and sort of a list query in
//! SQL, and the search through the trigram index of migration 2.

use rusqlite::params_from_iter;
use rusqlite::types::Value;

use super::codec::{
    HEALTH_COLUMNS, SEARCH_SEPARATOR, SPEC_COLUMNS, fts_phrase, like_pattern, search_fold,
};
use super::connections::summary_from_row;
use super::{SqliteStore, collect, db_error};
use crate::Result;
use crate::model::{Connection, ListQuery, Page, SortKey, Visibility};
use crate::store::columns::{self, page_offset};

/// Where a list query reads a connection's id, owner and grantees: `connections c` (and the
/// `grants`) for a plain list, the narrow search rows `connection_search s` for a search.
pub(super) struct ListSource {
    id: &'static str,
    owner: &'static str,
    /// The column listing the grantees as `u:<user id>` and `t:<team id>`, comma-separated;
    /// `None` to look them up in `grants`.
    viewers: Option<&'static str>,
}

pub(super) const LIST_FROM_CONNECTIONS: ListSource = ListSource {
    id: "c.id",
    owner: "c.owner",
    viewers: None,
};

const LIST_FROM_SEARCH: ListSource = ListSource {
    id: "s.connection_id",
    owner: "s.owner",
    viewers: Some("s.viewers"),
};

/// The FROM and the clause matching a non-empty search (a case-insensitive substring of name,
/// description, host or a tag) in the search rows `s`, with its parameter appended to `params`.
///
/// Three characters or more (after lowercasing) walk the trigram index `f` and read the search
/// row of each match by key (`CROSS JOIN` keeps that order); shorter searches, which have no
/// trigram, scan the search text with `LIKE`. A search containing the field separator matches
/// nothing, as no field may contain it.
fn search_clause(search: &str, params: &mut Vec<Value>) -> (String, String) {
    let scan = String::from("FROM connection_search s");
    let folded = search_fold(search);
    if folded.contains(SEARCH_SEPARATOR) {
        return (scan, String::from("0"));
    }
    if folded.chars().count() >= 3 {
        params.push(Value::Text(fts_phrase(&folded)));
        (
            String::from(
                "FROM connection_search_fts f CROSS JOIN connection_search s ON s.key = f.rowid",
            ),
            format!("connection_search_fts MATCH ?{}", params.len()),
        )
    } else {
        params.push(Value::Text(like_pattern(search)));
        (scan, format!("s.body LIKE ?{} ESCAPE '\\'", params.len()))
    }
}

/// The WHERE clause and parameters of a list query's filters and visibility, reading ids and
/// owners from `source` (the search itself is [`search_clause`]).
pub(super) fn list_filter(
    query: &ListQuery,
    visibility: &Visibility,
    source: &ListSource,
    mut params: Vec<Value>,
    mut clauses: Vec<String>,
) -> (String, Vec<Value>) {
    let ListSource { id, owner, .. } = source;
    if let Some(tag) = &query.tag {
        params.push(Value::Text(tag.as_str().to_owned()));
        clauses.push(format!(
            "EXISTS (SELECT 1 FROM connection_tags ft WHERE ft.connection_id = {id} \
             AND ft.tag = ?{})",
            params.len()
        ));
    }
    if let Some(status) = query.status {
        params.push(Value::Text(status.as_str().to_owned()));
        clauses.push(format!("coalesce(h.status, 'unknown') = ?{}", params.len()));
    }
    if let Some(engine) = query.engine {
        params.push(Value::Text(engine.as_str().to_owned()));
        clauses.push(format!("c.engine = ?{}", params.len()));
    }
    if let Some(o) = query.owner {
        params.push(Value::Text(o.to_string()));
        clauses.push(format!("{owner} = ?{}", params.len()));
    }
    if let Visibility::Member { user, teams } = visibility {
        if let Some(viewers) = source.viewers {
            // An element is `u:` or `t:` and a 36-character id; the `:` fixes where a match can
            // start, so `instr` finds exactly the listed ids.
            params.push(Value::Text(user.to_string()));
            let mut any = vec![format!("{owner} = ?{}", params.len())];
            params.push(Value::Text(format!("u:{user}")));
            any.push(format!("instr({viewers}, ?{}) > 0", params.len()));
            for team in teams {
                params.push(Value::Text(format!("t:{team}")));
                any.push(format!("instr({viewers}, ?{}) > 0", params.len()));
            }
            clauses.push(format!("({})", any.join(" OR ")));
        } else {
            params.push(Value::Text(user.to_string()));
            let u = params.len();
            let mut team_params = Vec::new();
            for team in teams {
                params.push(Value::Text(team.to_string()));
                team_params.push(format!("?{}", params.len()));
            }
            let team_clause = if team_params.is_empty() {
                String::new()
            } else {
                format!(" OR g.team_id IN ({})", team_params.join(", "))
            };
            clauses.push(format!(
                "({owner} = ?{u} OR EXISTS (SELECT 1 FROM grants g \
                 WHERE g.connection_id = {id} AND (g.user_id = ?{u}{team_clause})))"
            ));
        }
    }
    let where_clause = if clauses.is_empty() {
        String::from("1")
    } else {
        clauses.join(" AND ")
    };
    (where_clause, params)
}

/// The ORDER BY of a list, reading names from `name` and last changes from `updated` (the name
/// always last: names are unique, so the order is total).
pub(super) fn list_order(sort: SortKey, name: &str, updated: &str) -> String {
    match sort {
        SortKey::Name => name.to_owned(),
        SortKey::Updated => format!("{updated} DESC, {name}"),
        SortKey::Status => format!(
            "CASE coalesce(h.status, 'unknown') WHEN 'down' THEN 0 WHEN 'degraded' THEN 1 \
             WHEN 'unknown' THEN 2 ELSE 3 END, {name}"
        ),
        SortKey::Checked => format!("h.checked_at DESC NULLS LAST, {name}"),
        SortKey::Latency => format!("h.latency_ms DESC NULLS LAST, {name}"),
    }
}

impl SqliteStore {
    /// A list with a search. The total and the page's ids are chosen from the narrow search rows
    /// (trigram index, visibility, sort), joining `connections` or `connection_health` there only
    /// when a filter or the sort needs them; then only the rows of the page are read in full.
    /// The count and the page are two statements in one read transaction (one snapshot): a
    /// window count would sort every match, where the page keeps only the best `per_page`.
    pub(super) async fn search_connections(
        &self,
        search: &str,
        query: &ListQuery,
        visibility: &Visibility,
    ) -> Result<Page<Connection>> {
        let offset = page_offset(query.page, query.per_page)?;
        let mut params = Vec::new();
        let (mut from, clause) = search_clause(search, &mut params);
        let (where_clause, params) =
            list_filter(query, visibility, &LIST_FROM_SEARCH, params, vec![clause]);
        if query.engine.is_some() {
            from.push_str(" JOIN connections c ON c.id = s.connection_id");
        }
        if query.status.is_some() || query.sort.reads_health() {
            from.push_str(" LEFT JOIN connection_health h ON h.connection_id = s.connection_id");
        }
        let paged = PagedRead {
            from,
            where_clause,
            params,
            key: "s.connection_id AS id",
            key_order: list_order(query.sort, "s.name", "s.updated_at"),
            join: "JOIN connections c ON c.id = p.id",
            order: list_order(query.sort, "c.name", "c.updated_at"),
            offset,
            page: query.page,
            per_page: query.per_page,
        };
        self.pool.read(move |conn| paged.run(conn)).await
    }
}

/// A count and one page of summaries in one read transaction (one snapshot, two statements: a
/// window count would sort every match, where the page keeps only the best `per_page`). The
/// page's keys are picked first (`SELECT key {from} WHERE {where_clause} ORDER BY key_order`,
/// the filters' joins only), then only those rows are read in full (`join` on `p`, with their
/// health) and ordered by `order`.
pub(super) struct PagedRead {
    pub(super) from: String,
    pub(super) where_clause: String,
    pub(super) params: Vec<Value>,
    pub(super) key: &'static str,
    pub(super) key_order: String,
    pub(super) join: &'static str,
    pub(super) order: String,
    pub(super) offset: i64,
    pub(super) page: u32,
    pub(super) per_page: u32,
}

impl PagedRead {
    pub(super) fn run(self, conn: &mut rusqlite::Connection) -> Result<Page<Connection>> {
        let Self {
            from,
            where_clause,
            mut params,
            key,
            key_order,
            join,
            order,
            offset,
            page,
            per_page,
        } = self;
        let tx = conn.transaction().map_err(db_error)?;
        let total: i64 = tx
            .prepare_cached(&format!("SELECT count(*) {from} WHERE {where_clause}"))
            .and_then(|mut s| s.query_row(params_from_iter(params.iter()), |r| r.get(0)))
            .map_err(db_error)?;
        let items = if total > offset {
            let n = params.len();
            let sql = format!(
                "WITH p AS (SELECT {key} {from} WHERE {where_clause} \
                 ORDER BY {key_order} LIMIT ?{} OFFSET ?{}) \
                 SELECT {SPEC_COLUMNS}, {HEALTH_COLUMNS} FROM p {join} \
                 LEFT JOIN connection_health h ON h.connection_id = c.id \
                 ORDER BY {order}",
                n + 1,
                n + 2
            );
            params.push(Value::Integer(i64::from(per_page)));
            params.push(Value::Integer(offset));
            collect(&tx, &sql, params_from_iter(params), summary_from_row)?
        } else {
            Vec::new()
        };
        tx.commit().map_err(db_error)?;
        Ok(columns::page(items, total, page, per_page))
    }
}
