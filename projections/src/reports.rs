//! SQL over Arrow for analysts: DataFusion over the Parquet export and the
//! read models.
//!
//! Tables a query sees:
//!
//! | table | from |
//! |---|---|
//! | `events` | the Parquet export ([`crate::export`]): every column of [`crate::export::event_schema`] plus `day` (and `tenant_id` when not scoped to one tenant) |
//! | `messages` | a view of `events`: the customer's, the bot's and the agents' messages (payloads masked) |
//! | `sessions` | the `sessions` read model, times as timestamps |
//! | `agents` | the `queue_agents` read model |
//! | `qa` | QA evaluations — empty until QA exists (issue 6); its columns are fixed so that reports can name them |
//!
//! Queries are read-only (no DDL, DML or `SET`; no reading files by path),
//! scoped to a tenant when one is given (its rows only, in every table), and
//! bounded: at most `row_limit` rows come back (`truncated` says when there
//! were more) and a query running past `timeout` is stopped with an error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::builder::{Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionContext};
use futures_util::StreamExt;
use witness_schemas::TenantId;

use crate::{Projector, Value};

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no Parquet export at {0}: run `witness export --format parquet --out {0}` first")]
    NoExport(PathBuf),
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("the query ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error(transparent)]
    Projection(#[from] crate::ProjectionError),
    #[error("writing the result: {0}")]
    Write(#[from] arrow_schema::ArrowError),
    #[error("unknown report {0:?}; known: {known}", known = STANDARD.iter().map(|r| r.name).collect::<Vec<_>>().join(", "))]
    UnknownReport(String),
}

/// A query's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    /// More rows matched than the limit let through.
    pub truncated: bool,
}

impl Answer {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

/// How an answer is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
    /// Arrow IPC stream.
    Arrow,
}

/// The tables for one tenant (or all), ready for queries.
pub struct Reports {
    ctx: SessionContext,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports").field("session", &self.ctx.session_id()).finish()
    }
}

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A read model's column as Arrow sees it.
#[derive(Clone, Copy)]
enum Kind {
    Text,
    Int,
    Time,
}

const SESSION_COLUMNS: &[(&str, Kind)] = &[
    ("session_id", Kind::Text),
    ("tenant_id", Kind::Text),
    ("channel", Kind::Text),
    ("business_type", Kind::Text),
    ("started_at", Kind::Time),
    ("queued_at", Kind::Time),
    ("assigned_at", Kind::Time),
    ("ended_at", Kind::Time),
    ("agent_id", Kind::Text),
    ("group_name", Kind::Text),
    ("ended_by", Kind::Text),
    ("outcome", Kind::Text),
    ("satisfaction", Kind::Int),
    ("transfers", Kind::Int),
    ("messages", Kind::Int),
];

const AGENT_COLUMNS: &[(&str, Kind)] = &[
    ("agent_id", Kind::Text),
    ("tenant_id", Kind::Text),
    ("presence", Kind::Text),
    ("capacity", Kind::Int),
    ("skill_groups", Kind::Text),
    ("load", Kind::Int),
    ("updated_at", Kind::Time),
];

const QA_COLUMNS: &[(&str, Kind)] = &[
    ("session_id", Kind::Text),
    ("tenant_id", Kind::Text),
    ("agent_id", Kind::Text),
    ("evaluator_id", Kind::Text),
    ("score", Kind::Int),
    ("evaluated_at", Kind::Time),
];

fn schema_of(columns: &[(&str, Kind)]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(name, kind)| {
                let t = match kind {
                    Kind::Text => DataType::Utf8,
                    Kind::Int => DataType::Int64,
                    Kind::Time => time_type(),
                };
                Field::new(*name, t, true)
            })
            .collect::<Vec<_>>(),
    ))
}

/// Read-model rows as one Arrow batch (times are RFC 3339 text there).
fn batch_of(columns: &[(&str, Kind)], rows: &[Vec<Value>]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let arrays: Vec<ArrayRef> = columns
        .iter()
        .enumerate()
        .map(|(i, (_, kind))| -> ArrayRef {
            match kind {
                Kind::Text => {
                    let mut b = StringBuilder::new();
                    rows.iter().for_each(|r| b.append_option(r[i].opt_text()));
                    Arc::new(b.finish())
                }
                Kind::Int => {
                    let mut b = Int64Builder::new();
                    rows.iter().for_each(|r| b.append_option(matches!(r[i], Value::Int(Some(_))).then(|| r[i].int())));
                    Arc::new(b.finish())
                }
                Kind::Time => {
                    let mut b = TimestampMicrosecondBuilder::new().with_timezone("UTC");
                    rows.iter().for_each(|r| {
                        let t = r[i].opt_text().and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok());
                        b.append_option(t.map(|t| t.timestamp_micros()))
                    });
                    Arc::new(b.finish())
                }
            }
        })
        .collect();
    RecordBatch::try_new(schema_of(columns), arrays)
}

impl Reports {
    /// Opens the tables (see the module docs): `events` from the Parquet
    /// export in `export_dir`, the read models through `projector`; only
    /// `tenant`'s rows if given.
    pub async fn open(
        export_dir: &Path,
        projector: &Projector,
        tenant: Option<&TenantId>,
    ) -> Result<Self, ReportError> {
        let events_dir = export_dir.join("events");
        if !export_dir.join(crate::export::STATE_FILE).exists() {
            return Err(ReportError::NoExport(export_dir.to_owned()));
        }
        let ctx = SessionContext::new();
        // A tenant's own directory: other tenants' files are never opened.
        let (dir, partitions) = match tenant {
            Some(t) => (events_dir.join(format!("tenant_id={t}")), vec![("day".to_owned(), DataType::Utf8)]),
            None => (events_dir, vec![("tenant_id".to_owned(), DataType::Utf8), ("day".to_owned(), DataType::Utf8)]),
        };
        if dir.is_dir() {
            let url = ListingTableUrl::parse(format!(
                "{}/",
                dir.canonicalize()
                    .map_err(|e| {
                        datafusion::error::DataFusionError::External(format!("{}: {e}", dir.display()).into())
                    })?
                    .display()
            ))?;
            let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
                .with_file_extension(".parquet")
                .with_table_partition_cols(partitions);
            let config =
                ListingTableConfig::new(url).with_listing_options(options).with_schema(crate::export::event_schema());
            ctx.register_table("events", Arc::new(ListingTable::try_new(config)?))?;
        } else {
            // Nothing exported for this tenant yet: the table exists, empty.
            let mut fields: Vec<Field> = crate::export::event_schema().fields().iter().map(|f| (**f).clone()).collect();
            fields.extend(partitions.into_iter().map(|(name, t)| Field::new(name, t, false)));
            let schema = Arc::new(Schema::new(fields));
            ctx.register_table("events", Arc::new(MemTable::try_new(schema, vec![vec![]])?))?;
        }
        ctx.sql(
            "CREATE VIEW messages AS SELECT position, stream_id AS session_id, event_type, actor_kind AS sender, \
             actor_id, occurred_at, day, payload FROM events \
             WHERE event_type IN ('CustomerMessage', 'BotMessage', 'AgentMessage')",
        )
        .await?;
        for (name, table, columns) in
            [("sessions", "sessions", SESSION_COLUMNS), ("agents", "queue_agents", AGENT_COLUMNS)]
        {
            let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
            let rows = projector.rows(table, &names, tenant).await?;
            let batch = batch_of(columns, &rows)?;
            ctx.register_table(name, Arc::new(MemTable::try_new(batch.schema(), vec![vec![batch]])?))?;
        }
        ctx.register_table("qa", Arc::new(MemTable::try_new(schema_of(QA_COLUMNS), vec![vec![]])?))?;
        Ok(Self { ctx })
    }

    /// Runs one read-only query (see the module docs for the bounds).
    pub async fn sql(&self, sql: &str, row_limit: usize, timeout: Duration) -> Result<Answer, ReportError> {
        let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let run = async {
            let frame = self.ctx.sql_with_options(sql, read_only).await?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let mut stream = frame.execute_stream().await?;
            let (mut batches, mut rows, mut truncated) = (Vec::new(), 0, false);
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                if rows + batch.num_rows() > row_limit {
                    batches.push(batch.slice(0, row_limit - rows));
                    truncated = true;
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            Ok::<_, ReportError>(Answer { schema, batches, truncated })
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| ReportError::Timeout(timeout))?
    }

    /// Runs a standard report by name.
    pub async fn standard(&self, name: &str, row_limit: usize, timeout: Duration) -> Result<Answer, ReportError> {
        let report = STANDARD.iter().find(|r| r.name == name).ok_or_else(|| ReportError::UnknownReport(name.into()))?;
        self.sql(report.sql, row_limit, timeout).await
    }
}

/// A report every deployment gets, by name.
#[derive(Debug, Clone, Copy)]
pub struct Standard {
    pub name: &'static str,
    pub about: &'static str,
    pub sql: &'static str,
}

/// The standard reports (issue 7): each is plain SQL over the tables above,
/// so an analyst can start from it.
pub const STANDARD: &[Standard] = &[
    Standard {
        name: "sessions-by-channel",
        about: "sessions per channel and business type",
        sql: "SELECT channel, business_type, count(*) AS sessions FROM sessions \
              GROUP BY channel, business_type ORDER BY sessions DESC, channel, business_type",
    },
    Standard {
        name: "sessions-by-hour",
        about: "sessions started per hour of the day (UTC)",
        sql: "SELECT CAST(date_part('hour', started_at) AS BIGINT) AS hour, count(*) AS sessions FROM sessions \
              WHERE started_at IS NOT NULL GROUP BY 1 ORDER BY 1",
    },
    Standard {
        name: "wait-time",
        about: "seconds from queued to assigned: p50, p90, p99 per group",
        sql: "SELECT group_name, count(*) AS assigned, \
              approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY wait) AS p50_s, \
              approx_percentile_cont(0.9) WITHIN GROUP (ORDER BY wait) AS p90_s, \
              approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY wait) AS p99_s \
              FROM (SELECT group_name, \
                    CAST(to_unixtime(assigned_at) - to_unixtime(queued_at) AS DOUBLE) AS wait \
                    FROM sessions WHERE assigned_at IS NOT NULL AND queued_at IS NOT NULL) \
              GROUP BY group_name ORDER BY group_name",
    },
    Standard {
        name: "handle-time",
        about: "seconds from assigned to ended, per agent",
        sql: "SELECT agent_id, count(*) AS sessions, \
              avg(CAST(to_unixtime(ended_at) - to_unixtime(assigned_at) AS DOUBLE)) AS mean_s, \
              approx_percentile_cont(0.5) WITHIN GROUP \
                (ORDER BY CAST(to_unixtime(ended_at) - to_unixtime(assigned_at) AS DOUBLE)) AS p50_s \
              FROM sessions WHERE assigned_at IS NOT NULL AND ended_at IS NOT NULL \
              GROUP BY agent_id ORDER BY agent_id",
    },
    Standard {
        name: "bot-containment",
        about: "ended sessions: resolved by the bot alone, transferred to a human, abandoned in the queue",
        sql: "SELECT count(*) AS ended, \
              sum(CASE WHEN outcome = 'bot_resolved' THEN 1 ELSE 0 END) AS bot_resolved, \
              sum(CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END) AS transferred, \
              sum(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END) AS abandoned, \
              CAST(sum(CASE WHEN outcome = 'bot_resolved' THEN 1 ELSE 0 END) AS DOUBLE) / count(*) \
                AS containment_rate, \
              CAST(sum(CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END) AS DOUBLE) / count(*) AS transfer_rate, \
              CAST(sum(CASE WHEN outcome = 'abandoned' THEN 1 ELSE 0 END) AS DOUBLE) \
                / nullif(sum(CASE WHEN queued_at IS NOT NULL THEN 1 ELSE 0 END), 0) AS abandonment_rate \
              FROM sessions WHERE ended_at IS NOT NULL",
    },
    Standard {
        name: "satisfaction",
        about: "ratings 1–5 and how many sessions gave each",
        sql: "SELECT satisfaction AS rating, count(*) AS sessions FROM sessions \
              WHERE satisfaction IS NOT NULL GROUP BY satisfaction ORDER BY satisfaction",
    },
    Standard {
        name: "qa-scores",
        about: "QA scores in bands of ten",
        sql: "SELECT CAST(score / 10 AS BIGINT) * 10 AS band, count(*) AS evaluations FROM qa \
              GROUP BY 1 ORDER BY 1",
    },
    Standard {
        name: "recording-coverage",
        about: "sessions with a call, and how many of them have recording segments",
        sql: "SELECT count(*) AS with_call, count(r.session_id) AS recorded, \
              CAST(count(r.session_id) AS DOUBLE) / count(*) AS coverage \
              FROM (SELECT DISTINCT stream_id AS session_id FROM events WHERE event_type = 'CallStarted') c \
              LEFT JOIN (SELECT DISTINCT stream_id AS session_id FROM events \
                         WHERE event_type = 'RecordingSegmentClosed') r ON c.session_id = r.session_id",
    },
];

/// Writes `answer` in `format`.
pub fn write(answer: &Answer, format: Format, out: &mut dyn std::io::Write) -> Result<(), ReportError> {
    match format {
        Format::Table => {
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&answer.batches)?;
            writeln!(out, "{text}").map_err(arrow_schema::ArrowError::from)?;
        }
        Format::Csv => {
            let mut w = arrow_csv::WriterBuilder::new().with_header(true).build(out);
            if answer.batches.is_empty() {
                w.write(&RecordBatch::new_empty(answer.schema.clone()))?;
            }
            for b in &answer.batches {
                w.write(b)?;
            }
        }
        Format::Json => {
            let mut w = arrow_json::ArrayWriter::new(out);
            let batches: Vec<&RecordBatch> = answer.batches.iter().collect();
            w.write_batches(&batches)?;
            w.finish()?;
        }
        Format::Arrow => {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(out, &answer.schema)?;
            for b in &answer.batches {
                w.write(b)?;
            }
            w.finish()?;
        }
    }
    Ok(())
}
