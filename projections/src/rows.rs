//! Row operations: what a projection asks of its tables, written once and
//! turned into SQL for either backend.

/// A column value. Typed even when null, because PostgreSQL needs to know
/// the type of every bound parameter.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Value {
    Int(Option<i64>),
    Text(Option<String>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(Some(v))
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(Some(v.to_owned()))
    }
}

impl From<Option<String>> for Value {
    fn from(v: Option<String>) -> Self {
        Value::Text(v)
    }
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Int(None) | Value::Text(None))
    }

    /// The text, or empty for null or a number.
    pub fn text(&self) -> String {
        match self {
            Value::Text(Some(s)) => s.clone(),
            Value::Int(Some(i)) => i.to_string(),
            _ => String::new(),
        }
    }

    /// The text, or `None` for null.
    pub fn opt_text(&self) -> Option<String> {
        match self {
            Value::Text(v) => v.clone(),
            Value::Int(v) => v.map(|i| i.to_string()),
        }
    }

    /// The integer, or 0 for null or text.
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(Some(i)) => *i,
            _ => 0,
        }
    }
}

/// How an upsert treats a column of an existing row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Merge {
    /// Overwrite.
    Set,
    /// Keep the existing value unless it is null (first one wins).
    KeepFirst,
}

pub type Column = (&'static str, Value);

/// One change to one row, keyed by the table's primary key column.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOp {
    /// Insert the row, or update the given columns of the existing one.
    Upsert {
        table: &'static str,
        key: Column,
        columns: Vec<(&'static str, Value, Merge)>,
    },
    /// Insert an append-only row; a row with that key already there is kept
    /// (so replaying an event twice changes nothing).
    Insert {
        table: &'static str,
        key: Column,
        columns: Vec<Column>,
    },
    /// Update columns of an existing row (nothing if there is none).
    Update {
        table: &'static str,
        key: Column,
        columns: Vec<Column>,
    },
    Delete {
        table: &'static str,
        key: Column,
    },
    /// `column = column + delta` on an existing row.
    Add {
        table: &'static str,
        key: Column,
        column: &'static str,
        delta: i64,
    },
}

/// The SQL of an op and its parameters in order; `p(i)` writes placeholder i (1-based).
pub(crate) fn sql(op: &RowOp, p: fn(usize) -> String) -> (String, Vec<Value>) {
    match op {
        RowOp::Upsert { table, key, columns } => {
            let names: Vec<&str> = std::iter::once(key.0).chain(columns.iter().map(|c| c.0)).collect();
            let marks: Vec<String> = (1..=names.len()).map(p).collect();
            let updates: Vec<String> = columns
                .iter()
                .map(|(c, _, merge)| match merge {
                    Merge::Set => format!("{c} = excluded.{c}"),
                    Merge::KeepFirst => format!("{c} = COALESCE({table}.{c}, excluded.{c})"),
                })
                .collect();
            let action =
                if updates.is_empty() { "NOTHING".to_owned() } else { format!("UPDATE SET {}", updates.join(", ")) };
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO {action}",
                names.join(", "),
                marks.join(", "),
                key.0
            );
            (sql, std::iter::once(&key.1).chain(columns.iter().map(|c| &c.1)).cloned().collect())
        }
        RowOp::Insert { table, key, columns } => {
            let names: Vec<&str> = std::iter::once(key.0).chain(columns.iter().map(|c| c.0)).collect();
            let marks: Vec<String> = (1..=names.len()).map(p).collect();
            let sql = format!(
                "INSERT INTO {table} ({}) VALUES ({}) ON CONFLICT ({}) DO NOTHING",
                names.join(", "),
                marks.join(", "),
                key.0
            );
            (sql, std::iter::once(&key.1).chain(columns.iter().map(|c| &c.1)).cloned().collect())
        }
        RowOp::Update { table, key, columns } => {
            let sets: Vec<String> =
                columns.iter().enumerate().map(|(i, c)| format!("{} = {}", c.0, p(i + 1))).collect();
            let sql = format!("UPDATE {table} SET {} WHERE {} = {}", sets.join(", "), key.0, p(columns.len() + 1));
            (sql, columns.iter().map(|c| c.1.clone()).chain(std::iter::once(key.1.clone())).collect())
        }
        RowOp::Delete { table, key } => {
            (format!("DELETE FROM {table} WHERE {} = {}", key.0, p(1)), vec![key.1.clone()])
        }
        RowOp::Add { table, key, column, delta } => (
            format!("UPDATE {table} SET {column} = {column} + {} WHERE {} = {}", p(1), key.0, p(2)),
            vec![Value::from(*delta), key.1.clone()],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserts_overwrite_or_keep_the_first_value_per_column() {
        let op = RowOp::Upsert {
            table: "sessions",
            key: ("session_id", "s1".into()),
            columns: vec![("agent_id", "a".into(), Merge::Set), ("queued_at", "t".into(), Merge::KeepFirst)],
        };
        let (sql, params) = sql(&op, |i| format!("${i}"));
        assert_eq!(
            sql,
            "INSERT INTO sessions (session_id, agent_id, queued_at) VALUES ($1, $2, $3) ON CONFLICT (session_id) \
             DO UPDATE SET agent_id = excluded.agent_id, queued_at = COALESCE(sessions.queued_at, excluded.queued_at)"
        );
        assert_eq!(params.len(), 3);
    }
}
