//! A batch's row operations written with few statements.
//!
//! One by one, every [`RowOp`] is a statement of its own (see
//! [`crate::rows::sql`]); a rebuild then spends most of its time preparing,
//! binding and executing them. Here a batch becomes:
//!
//! - for a table that only receives [`RowOp::Insert`]s (the timeline, the
//!   audit trail): multi-row `INSERT … ON CONFLICT DO NOTHING`;
//! - for every other table: the rows the ops touch are read once
//!   ([`Batch::keys`]), the ops are applied to them in memory in their order,
//!   with the meaning their SQL has ([`fold`]), and each row's final state is
//!   written once (multi-row upsert) or deleted.
//!
//! The outcome is the same as running the ops one by one; the test
//! `batched_ops_leave_the_tables_as_sequential_ops_do` checks that on random
//! op sequences against SQLite.

use std::collections::HashMap;
use std::sync::Arc;

use crate::rows::{Merge, RowOp, Value};

/// A table's columns in order, each with its default (typed: `Int(None)`
/// or `Text(None)` when there is none, so that a read null keeps its type).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Shape {
    pub columns: Vec<String>,
    pub defaults: Vec<Value>,
}

impl Shape {
    /// Builds a shape from `(name, is_integer, default SQL text)` per column,
    /// as SQLite's `PRAGMA table_info` or PostgreSQL's
    /// `information_schema.columns` give them.
    pub fn from_catalog(table: &str, columns: Vec<(String, bool, Option<String>)>) -> Result<Self, String> {
        if columns.is_empty() {
            return Err(format!("table {table} does not exist"));
        }
        let mut shape = Shape { columns: Vec::new(), defaults: Vec::new() };
        for (name, integer, default) in columns {
            let default = parse_default(integer, default.as_deref())
                .ok_or_else(|| format!("column {table}.{name}: unsupported default {default:?}"))?;
            shape.columns.push(name);
            shape.defaults.push(default);
        }
        Ok(shape)
    }

    pub fn index(&self, column: &str) -> Result<usize, String> {
        self.columns.iter().position(|c| c == column).ok_or_else(|| format!("no column {column}"))
    }

    /// A value read from the database as the column's type.
    pub fn typed(&self, i: usize, int: Option<i64>, text: Option<String>) -> Value {
        match self.defaults[i] {
            Value::Int(_) => Value::Int(int),
            Value::Text(_) => Value::Text(text),
        }
    }
}

/// A literal column default (`0`, `'offline'`, `''::text`, `NULL`) as a value.
fn parse_default(integer: bool, sql: Option<&str>) -> Option<Value> {
    let sql = sql.map(str::trim).filter(|s| !s.eq_ignore_ascii_case("null"));
    let Some(sql) = sql else { return Some(if integer { Value::Int(None) } else { Value::Text(None) }) };
    if integer {
        return sql.parse().ok().map(|i| Value::Int(Some(i)));
    }
    // PostgreSQL adds a cast: 'offline'::text.
    let quoted = sql.rsplit_once("::").map_or(sql, |(v, _)| v);
    let inner = quoted.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(Value::Text(Some(inner.replace("''", "'"))))
}

/// Rows of one insert-only table with the same columns.
#[derive(Debug)]
pub(crate) struct Inserts {
    pub table: &'static str,
    pub key: &'static str,
    /// Key column first.
    pub columns: Vec<&'static str>,
    pub rows: Vec<Vec<Value>>,
}

/// The ops on one table that are folded in memory.
#[derive(Debug)]
pub(crate) struct Changes {
    pub table: &'static str,
    pub key: &'static str,
    pub ops: Vec<RowOp>,
}

/// A batch's ops, sorted into what can be written together.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub inserts: Vec<Inserts>,
    pub changes: Vec<Changes>,
}

fn target(op: &RowOp) -> (&'static str, &'static str) {
    match op {
        RowOp::Upsert { table, key, .. }
        | RowOp::Insert { table, key, .. }
        | RowOp::Update { table, key, .. }
        | RowOp::Delete { table, key }
        | RowOp::Add { table, key, .. } => (table, key.0),
    }
}

fn key_value(op: &RowOp) -> &Value {
    match op {
        RowOp::Upsert { key, .. }
        | RowOp::Insert { key, .. }
        | RowOp::Update { key, .. }
        | RowOp::Delete { key, .. }
        | RowOp::Add { key, .. } => &key.1,
    }
}

impl Batch {
    /// Sorts `ops` by table; tables are independent of one another, and
    /// within a table the ops keep their order.
    pub fn new(ops: Vec<RowOp>) -> Self {
        let mut by_table: Vec<(&'static str, Vec<RowOp>)> = Vec::new();
        for op in ops {
            let table = target(&op).0;
            match by_table.iter_mut().find(|(t, _)| *t == table) {
                Some((_, list)) => list.push(op),
                None => by_table.push((table, vec![op])),
            }
        }
        let mut batch = Batch::default();
        for (table, list) in by_table {
            let key = target(&list[0]).1;
            let insert_columns = |op: &RowOp| match op {
                RowOp::Insert { columns, .. } => Some(columns.iter().map(|c| c.0).collect::<Vec<_>>()),
                _ => None,
            };
            let first = insert_columns(&list[0]);
            let same_inserts = first.is_some()
                && list.iter().all(|op| target(op).1 == key && insert_columns(op).as_ref() == first.as_ref());
            if let (true, Some(rest)) = (same_inserts, first) {
                let rows = list
                    .into_iter()
                    .map(|op| match op {
                        RowOp::Insert { key, columns, .. } => {
                            std::iter::once(key.1).chain(columns.into_iter().map(|c| c.1)).collect()
                        }
                        _ => unreachable!("checked above"),
                    })
                    .collect();
                batch.inserts.push(Inserts { table, key, columns: std::iter::once(key).chain(rest).collect(), rows });
            } else {
                batch.changes.push(Changes { table, key, ops: list });
            }
        }
        batch
    }
}

impl Changes {
    /// The distinct keys the ops touch, in first-touched order.
    pub fn keys(&self) -> Vec<Value> {
        let mut seen = std::collections::HashSet::new();
        self.ops.iter().map(key_value).filter(|k| seen.insert(*k)).cloned().collect()
    }

    /// Whether every op names the table's key column (otherwise rows cannot
    /// be identified by one key, and the ops are run one by one).
    pub fn foldable(&self) -> bool {
        self.ops.iter().all(|op| target(op).1 == self.key)
    }
}

/// What [`fold`] leaves to write: whole rows to upsert (in the shape's
/// column order) and keys to delete.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Written {
    pub upserts: Vec<Vec<Value>>,
    pub deletes: Vec<Value>,
}

/// Applies `ops` to the rows they touch. `existing` holds those of them
/// that are in the table now, whole, keyed by their key. Each op means
/// what its SQL means (`rows::sql`): an upsert inserts (other columns take
/// their defaults) or updates; an insert does nothing to an existing row;
/// update and add do nothing to a missing row; adding to null stays null.
pub(crate) fn fold(
    shape: &Shape,
    changes: &Changes,
    mut existing: HashMap<Value, Vec<Value>>,
) -> Result<Written, String> {
    let key_index = shape.index(changes.key)?;
    let keys = changes.keys();
    let before: HashMap<Value, Vec<Value>> = existing.clone();
    let new_row = |key: &Value| {
        let mut row = shape.defaults.clone();
        row[key_index] = key.clone();
        row
    };
    for op in &changes.ops {
        let key = key_value(op);
        let row = existing.get_mut(key);
        match (op, row) {
            (RowOp::Upsert { columns, .. }, Some(row)) => {
                for (c, v, merge) in columns {
                    let i = shape.index(c)?;
                    if *merge == Merge::Set || row[i].is_null() {
                        row[i] = v.clone();
                    }
                }
            }
            (RowOp::Upsert { columns, .. }, None) => {
                let mut row = new_row(key);
                for (c, v, _) in columns {
                    row[shape.index(c)?] = v.clone();
                }
                existing.insert(key.clone(), row);
            }
            (RowOp::Insert { columns, .. }, None) => {
                let mut row = new_row(key);
                for (c, v) in columns {
                    row[shape.index(c)?] = v.clone();
                }
                existing.insert(key.clone(), row);
            }
            (RowOp::Update { columns, .. }, Some(row)) => {
                for (c, v) in columns {
                    row[shape.index(c)?] = v.clone();
                }
            }
            (RowOp::Add { column, delta, .. }, Some(row)) => {
                let i = shape.index(column)?;
                row[i] = match &row[i] {
                    Value::Int(v) => Value::Int(v.map(|v| v + delta)),
                    Value::Text(_) => return Err(format!("adding to text column {}.{column}", changes.table)),
                };
            }
            (RowOp::Delete { .. }, Some(_)) => {
                existing.remove(key);
            }
            (RowOp::Insert { .. } | RowOp::Update { .. } | RowOp::Add { .. } | RowOp::Delete { .. }, _) => {}
        }
    }
    let mut written = Written::default();
    for key in keys {
        match (before.get(&key), existing.remove(&key)) {
            (Some(old), Some(new)) if *old == new => {}
            (_, Some(new)) => written.upserts.push(new),
            (Some(_), None) => written.deletes.push(key),
            (None, None) => {}
        }
    }
    Ok(written)
}

/// What the writer learns once per table and reuses: shapes, and the text
/// of multi-row statements (building a 64-row statement's text costs more
/// than running it, and the text is the key of the prepared-statement cache).
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    pub shapes: HashMap<&'static str, Arc<Shape>>,
    sql: HashMap<(Statement, &'static str, Vec<&'static str>, usize), Arc<str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Statement {
    Insert,
    Upsert,
    Select,
    Delete,
}

impl Catalog {
    fn cached(
        &mut self,
        key: (Statement, &'static str, Vec<&'static str>, usize),
        build: impl FnOnce() -> String,
    ) -> Arc<str> {
        self.sql.entry(key).or_insert_with(|| build().into()).clone()
    }

    /// A multi-row insert of `rows` rows that keeps existing rows.
    pub fn insert_sql(&mut self, ins: &Inserts, rows: usize, p: fn(usize) -> String) -> Arc<str> {
        self.cached((Statement::Insert, ins.table, ins.columns.clone(), rows), || {
            format!(
                "INSERT INTO {} ({}) VALUES {} ON CONFLICT ({}) DO NOTHING",
                ins.table,
                ins.columns.join(", "),
                values(rows, ins.columns.len(), p),
                ins.key
            )
        })
    }

    /// A multi-row upsert of whole rows.
    pub fn upsert_sql(&mut self, changes: &Changes, shape: &Shape, rows: usize, p: fn(usize) -> String) -> Arc<str> {
        let (table, key) = (changes.table, changes.key);
        self.cached((Statement::Upsert, table, vec![key], rows), || {
            let sets: Vec<String> =
                shape.columns.iter().filter(|c| *c != key).map(|c| format!("{c} = excluded.{c}")).collect();
            format!(
                "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({key}) DO UPDATE SET {}",
                shape.columns.join(", "),
                values(rows, shape.columns.len(), p),
                sets.join(", ")
            )
        })
    }

    /// The whole rows with one of `n` keys.
    pub fn select_sql(&mut self, changes: &Changes, shape: &Shape, n: usize, p: fn(usize) -> String) -> Arc<str> {
        let (table, key) = (changes.table, changes.key);
        self.cached((Statement::Select, table, vec![key], n), || {
            let marks: Vec<String> = (1..=n).map(p).collect();
            format!("SELECT {} FROM {table} WHERE {key} IN ({})", shape.columns.join(", "), marks.join(", "))
        })
    }

    pub fn delete_sql(&mut self, changes: &Changes, n: usize, p: fn(usize) -> String) -> Arc<str> {
        let (table, key) = (changes.table, changes.key);
        self.cached((Statement::Delete, table, vec![key], n), || {
            let marks: Vec<String> = (1..=n).map(p).collect();
            format!("DELETE FROM {table} WHERE {key} IN ({})", marks.join(", "))
        })
    }
}

/// Splits `n` rows into chunks of at most 64, each a power of two, so that
/// a table needs at most seven statement shapes (each prepared once).
pub(crate) fn chunks(n: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let mut start = 0;
    std::iter::from_fn(move || {
        let left = n - start;
        if left == 0 {
            return None;
        }
        let size = if left >= 64 { 64 } else { 1 << (usize::BITS - 1 - left.leading_zeros()) };
        start += size;
        Some(start - size..start)
    })
}

/// `(…), (…)` for `rows` rows of `width` placeholders; `p(i)` writes the
/// i-th (1-based).
fn values(rows: usize, width: usize, p: fn(usize) -> String) -> String {
    (0..rows)
        .map(|r| format!("({})", (1..=width).map(|c| p(r * width + c)).collect::<Vec<_>>().join(", ")))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_powers_of_two_up_to_64_and_cover_every_row() {
        for n in [0, 1, 2, 3, 63, 64, 65, 200, 1000] {
            let parts: Vec<_> = chunks(n).collect();
            assert_eq!(parts.iter().map(|r| r.len()).sum::<usize>(), n);
            assert!(parts.iter().all(|r| r.len().is_power_of_two() && r.len() <= 64), "{n}: {parts:?}");
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
        }
    }

    #[test]
    fn literal_defaults_of_both_catalogs_are_read() {
        assert_eq!(parse_default(true, Some("0")), Some(Value::Int(Some(0))));
        assert_eq!(parse_default(false, Some("'offline'")), Some(Value::from("offline")));
        assert_eq!(parse_default(false, Some("''::text")), Some(Value::from("")));
        assert_eq!(parse_default(false, Some("'it''s'::character varying")), Some(Value::from("it's")));
        assert_eq!(parse_default(false, None), Some(Value::Text(None)));
        assert_eq!(parse_default(true, Some("nextval('s'::regclass)")), None);
    }
}
