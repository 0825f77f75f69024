//! SQL over Arrow for analysts: DataFusion over the Parquet export
//! ([`crate::export`]) — the same files pyarrow or DuckDB would read.
//!
//! Tables a query sees:
//!
//! | table | from |
//! |---|---|
//! | `events` | the Parquet export ([`crate::export`]): every column of [`crate::export::event_schema`] plus `day` |
//! | `messages` | a view of `events`: the customer's, the bot's and the agents' messages (payloads masked) |
//! | `sessions` | the snapshot of the `sessions` read model taken by the export, times as timestamps |
//! | `agents` | the snapshot of the `queue_agents` read model |
//! | `qa_evaluations` | the snapshot of the `qa_evaluations` read model (`QaEvaluated` events, score in percent) |
//! | `qa` | a view: each evaluation with the `agent_id` of its session |
//!
//! Queries are read-only (no DDL, DML or `SET`; no reading files by path)
//! and scoped to a tenant when one is given: only that tenant's directories
//! are opened, and the tables have no `tenant_id` column (unscoped, every
//! table has one). They are bounded: at most `row_limit` rows come back
//! (`truncated` says when there were more) and a query running past
//! `timeout` is stopped with an error, as is one that needs more than
//! [`MEMORY_LIMIT`] (nothing spills to disk). Before anything is planned,
//! a query's text is bounded ([`MAX_SQL_BYTES`]) and so is its shape
//! ([`MAX_DEPTH`]: expressions, subqueries and set operations nested no
//! deeper), so that no query can exhaust a planner's stack.
//!
//! A server runs each query in a worker process of its own ([`worker`]):
//! a scalar function's allocation, which no memory pool sees, or an
//! operator that never yields then costs that process only, which is
//! killed at its limits, never the server.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl};
use datafusion::datasource::MemTable;
use datafusion::execution::context::{SQLOptions, SessionConfig, SessionContext};
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use futures_util::StreamExt;
use witness_schemas::TenantId;

use crate::export;

pub mod worker;

/// The longest query text, in bytes.
pub const MAX_SQL_BYTES: usize = 32 * 1024;
/// How deeply a query may nest expressions (`1+1+…`, `a OR b OR …`),
/// subqueries, or set operations (`… UNION ALL …`). A long list of
/// alternatives is written `x IN (…)`, which does not nest.
pub const MAX_DEPTH: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no Parquet export at {0}: run `witness export --format parquet --out {0}` first")]
    NoExport(PathBuf),
    #[error("{0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("the query ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("writing the result: {0}")]
    Write(#[from] arrow_schema::ArrowError),
    #[error("unknown report {0:?}; known: {known}", known = STANDARD.iter().map(|r| r.name).collect::<Vec<_>>().join(", "))]
    UnknownReport(String),
    /// The query is larger, deeper or hungrier than a report may be.
    #[error("{0}")]
    Limit(String),
    /// Every report worker is busy; try again shortly.
    #[error("every report worker is busy; try again in a few seconds")]
    Busy,
    /// The worker process failed for a reason of its own (not the query's).
    #[error("the report worker failed: {0}")]
    Worker(String),
}

/// Refuses a query whose text or shape is past the bounds
/// ([`MAX_SQL_BYTES`], [`MAX_DEPTH`]), before anything is planned. Text
/// that does not parse is left to the planner, which says why.
///
/// The syntax tree is walked on a thread with a stack of its own, large
/// enough for the deepest tree a text of [`MAX_SQL_BYTES`] can make, so
/// that the check itself cannot overflow the caller's stack.
pub fn check_shape(sql: &str) -> Result<(), ReportError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(ReportError::Limit(format!(
            "the query is {} bytes long; at most {MAX_SQL_BYTES} are allowed",
            sql.len()
        )));
    }
    let sql = sql.to_owned();
    std::thread::Builder::new()
        .name("witness-sql-shape".into())
        .stack_size(256 << 20)
        .spawn(move || shape::depth(&sql))
        .map_err(|e| ReportError::Worker(format!("starting the query check: {e}")))?
        .join()
        .map_err(|_| ReportError::Worker("the query check failed".into()))?
        .map_or(Ok(()), |depth| {
            if depth > MAX_DEPTH {
                Err(ReportError::Limit(format!(
                    "the query nests {depth} deep; at most {MAX_DEPTH} levels of expressions, subqueries \
                     and set operations are allowed (write a long list of alternatives as `x IN (…)`)"
                )))
            } else {
                Ok(())
            }
        })
}

/// The nesting depth of a query's syntax tree.
mod shape {
    use std::ops::ControlFlow;

    use datafusion::sql::parser::{DFParser, Statement};
    use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Visit, Visitor};

    /// The deepest nesting of expressions, queries and set operations in
    /// `sql`; `None` if it does not parse.
    pub(super) fn depth(sql: &str) -> Option<usize> {
        let statements = DFParser::parse_sql(sql).ok()?;
        let mut deepest = Deepest::default();
        for statement in &statements {
            visit(statement, &mut deepest);
        }
        Some(deepest.max)
    }

    fn visit(statement: &Statement, deepest: &mut Deepest) {
        match statement {
            Statement::Statement(s) => {
                let _ = s.visit(deepest);
            }
            Statement::Explain(e) => visit(&e.statement, deepest),
            // DDL and COPY: refused by the read-only options when planned.
            _ => {}
        }
    }

    #[derive(Default)]
    struct Deepest {
        now: usize,
        max: usize,
    }

    impl Deepest {
        fn enter(&mut self, levels: usize) {
            self.now += levels;
            self.max = self.max.max(self.now);
        }
    }

    /// How deeply set operations nest in a query's body (`a UNION b UNION
    /// c` is two: the parser nests them to the left).
    fn set_depth(body: &SetExpr) -> usize {
        let (mut depth, mut pending) = (0, vec![(body, 0)]);
        while let Some((e, d)) = pending.pop() {
            depth = depth.max(d);
            if let SetExpr::SetOperation { left, right, .. } = e {
                pending.push((left, d + 1));
                pending.push((right, d + 1));
            }
        }
        depth
    }

    impl Visitor for Deepest {
        type Break = ();

        fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            self.enter(1 + set_depth(&query.body));
            ControlFlow::Continue(())
        }

        fn post_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
            self.now -= 1 + set_depth(&query.body);
            ControlFlow::Continue(())
        }

        fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.enter(1);
            ControlFlow::Continue(())
        }

        fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
            self.now -= 1;
            ControlFlow::Continue(())
        }
    }
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
    /// The export's place on disk, as plans and errors would print it:
    /// replaced by `export` in what a query shows (issue 27, L6).
    place: Vec<String>,
}

impl std::fmt::Debug for Reports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reports").field("session", &self.ctx.session_id()).finish()
    }
}

/// Registers `name` over the Parquet files under `root` (Hive partitions:
/// `tenant_id=…` then `extra`), or only `tenant`'s directory of them; an
/// empty table of the same columns when nothing is there yet.
async fn register(
    ctx: &SessionContext,
    name: &str,
    root: &Path,
    tenant: Option<&TenantId>,
    schema: SchemaRef,
    extra: &[&str],
) -> Result<(), ReportError> {
    let mut partitions: Vec<(String, DataType)> = extra.iter().map(|p| (p.to_string(), DataType::Utf8)).collect();
    let dir = match tenant {
        Some(t) => root.join(format!("tenant_id={t}")),
        None => {
            partitions.insert(0, ("tenant_id".into(), DataType::Utf8));
            root.to_owned()
        }
    };
    if !dir.is_dir() {
        let mut fields: Vec<Field> = schema.fields().iter().map(|f| (**f).clone()).collect();
        fields.extend(partitions.into_iter().map(|(name, t)| Field::new(name, t, false)));
        let empty = MemTable::try_new(Arc::new(Schema::new(fields)), vec![vec![]])?;
        ctx.register_table(name, Arc::new(empty))?;
        return Ok(());
    }
    let absolute = dir
        .canonicalize()
        .map_err(|e| datafusion::error::DataFusionError::External(format!("{}: {e}", dir.display()).into()))?;
    let url = ListingTableUrl::parse(format!("{}/", absolute.display()))?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(partitions);
    let config = ListingTableConfig::new(url).with_listing_options(options).with_schema(schema);
    ctx.register_table(name, Arc::new(ListingTable::try_new(config)?))?;
    Ok(())
}

/// The threads reports run on (two, named `witness-reports`), apart from
/// whatever serves requests.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("witness-reports")
            .enable_all()
            .build()
            .expect("the reports' runtime starts")
    })
}

/// The memory one query may hold; past it the query fails ("Resources
/// exhausted"), not the server. Nothing spills to disk: queries write
/// nothing anywhere.
pub const MEMORY_LIMIT: usize = 512 << 20;

impl Reports {
    /// Opens the tables of the export in `export_dir` (see the module
    /// docs); only `tenant`'s rows if given — its own directories are the
    /// only ones opened. Each query may hold [`MEMORY_LIMIT`] bytes.
    pub async fn open(export_dir: &Path, tenant: Option<&TenantId>) -> Result<Self, ReportError> {
        Self::open_with_memory(export_dir, tenant, MEMORY_LIMIT).await
    }

    /// [`Reports::open`] with another memory limit, in bytes.
    pub async fn open_with_memory(
        export_dir: &Path,
        tenant: Option<&TenantId>,
        memory: usize,
    ) -> Result<Self, ReportError> {
        if !export_dir.join(export::STATE_FILE).exists() {
            return Err(ReportError::NoExport(export_dir.to_owned()));
        }
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(memory, 1.0)
            .with_disk_manager_builder(DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(SessionConfig::new(), runtime);
        register(&ctx, "events", &export_dir.join("events"), tenant, export::event_schema(), &["day"]).await?;
        for snapshot in export::SNAPSHOTS {
            let schema = export::schema_of(snapshot.columns);
            register(&ctx, snapshot.name, &export_dir.join(snapshot.name), tenant, schema, &[]).await?;
        }
        // Each evaluation with the agent who handled the session.
        let tenant_column = if tenant.is_none() { ", q.tenant_id" } else { "" };
        ctx.sql(&format!(
            "CREATE VIEW qa AS SELECT q.evaluation_id, q.session_id, s.agent_id, q.evaluator_id, q.score, \
             q.evaluated_at{tenant_column} FROM qa_evaluations q LEFT JOIN sessions s ON q.session_id = s.session_id"
        ))
        .await?;
        ctx.sql(
            "CREATE VIEW messages AS SELECT position, stream_id AS session_id, event_type, actor_kind AS sender, \
             actor_id, occurred_at, day, payload FROM events \
             WHERE event_type IN ('CustomerMessage', 'BotMessage', 'AgentMessage')",
        )
        .await?;
        let absolute = export_dir.canonicalize().unwrap_or_else(|_| export_dir.to_owned()).display().to_string();
        let place = vec![absolute.clone(), absolute.trim_start_matches('/').to_owned()];
        Ok(Self { ctx, place })
    }

    /// Runs one read-only query (see the module docs for the bounds).
    ///
    /// The query runs on the reports' own threads ([`runtime`]), never on
    /// the caller's: an operator may compute for seconds without yielding
    /// (a nested-loop join works a whole batch at once), and must neither
    /// stall the caller's runtime nor outlive its timeout unnoticed. On
    /// timeout the caller gets [`ReportError::Timeout`] at once and the
    /// query is cancelled, which takes effect at its next yield.
    pub async fn sql(&self, sql: &str, row_limit: usize, timeout: Duration) -> Result<Answer, ReportError> {
        check_shape(sql)?;
        let read_only = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
        let (ctx, sql) = (self.ctx.clone(), sql.to_owned());
        let run = async move {
            let frame = ctx.sql_with_options(&sql, read_only).await?;
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
        let mut task = runtime().spawn(run);
        match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(Ok(answer))) => Ok(self.scrub_plan(answer)),
            Ok(Ok(Err(ReportError::Query(e)))) => {
                Err(ReportError::Query(datafusion::error::DataFusionError::Plan(self.scrub(&e.to_string()))))
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(e)) => Err(ReportError::Query(datafusion::error::DataFusionError::External(Box::new(e)))),
            Err(_) => {
                task.abort();
                Err(ReportError::Timeout(timeout))
            }
        }
    }

    /// `text` with the export's place on disk replaced by `export`.
    fn scrub(&self, text: &str) -> String {
        self.place.iter().filter(|p| p.len() > 1).fold(text.to_owned(), |text, place| text.replace(place, "export"))
    }

    /// An `EXPLAIN`'s answer (columns `plan_type` and `plan`) with the
    /// export's place on disk taken out of the plans.
    fn scrub_plan(&self, answer: Answer) -> Answer {
        let names: Vec<&str> = answer.schema.fields().iter().map(|f| f.name().as_str()).collect();
        if names != ["plan_type", "plan"] {
            return answer;
        }
        let batches = answer
            .batches
            .iter()
            .map(|b| {
                let columns = b
                    .columns()
                    .iter()
                    .map(|c| match c.as_any().downcast_ref::<arrow_array::StringArray>() {
                        Some(text) => Arc::new(
                            text.iter().map(|t| t.map(|t| self.scrub(t))).collect::<arrow_array::StringArray>(),
                        ) as arrow_array::ArrayRef,
                        None => c.clone(),
                    })
                    .collect();
                RecordBatch::try_new(b.schema(), columns).unwrap_or_else(|_| b.clone())
            })
            .collect();
        Answer { batches, ..answer }
    }

    /// Runs a standard report by name, its times in the zone
    /// `utc_offset_minutes` east of UTC.
    pub async fn standard(
        &self,
        name: &str,
        utc_offset_minutes: i32,
        row_limit: usize,
        timeout: Duration,
    ) -> Result<Answer, ReportError> {
        let report = STANDARD.iter().find(|r| r.name == name).ok_or_else(|| ReportError::UnknownReport(name.into()))?;
        self.sql(&report.sql_in(utc_offset_minutes), row_limit, timeout).await
    }
}

/// A report every deployment gets, by name.
#[derive(Debug, Clone, Copy)]
pub struct Standard {
    pub name: &'static str,
    pub about: &'static str,
    /// `{utc_offset_minutes}` stands for the time zone its times are told in.
    pub sql: &'static str,
}

impl Standard {
    /// The report's SQL with its times in the zone `utc_offset_minutes`
    /// east of UTC (the tenant's: Beijing is 480).
    pub fn sql_in(&self, utc_offset_minutes: i32) -> String {
        self.sql.replace("{utc_offset_minutes}", &utc_offset_minutes.to_string())
    }
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
        about: "sessions started per hour of the day, in the tenant's time zone",
        sql: "SELECT CAST(date_part('hour', started_at + INTERVAL '{utc_offset_minutes} minutes') AS BIGINT) AS hour, \
              count(*) AS sessions FROM sessions WHERE started_at IS NOT NULL GROUP BY 1 ORDER BY 1",
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn chain(term: &str, op: &str, n: usize) -> String {
        vec![term; n].join(op)
    }

    #[test]
    fn the_shape_check_measures_nesting_of_every_kind() {
        let depth = |sql: &str| shape::depth(sql).unwrap();
        assert_eq!(depth("SELECT 1"), 2, "the query and its one expression");
        assert!(depth(&format!("SELECT {}", chain("1", "+", 1000))) >= 1000);
        assert!(depth(&chain("SELECT 1", " UNION ALL ", 600)) >= 600);
        assert!(depth(&format!("EXPLAIN SELECT {}", chain("1", "+", 300))) >= 300, "inside EXPLAIN too");
        let nested = (0..10).fold("SELECT 1".to_owned(), |q, _| format!("SELECT * FROM ({q})"));
        assert!(depth(&nested) >= 10, "subqueries nest");
        // Deeper than the parser's own recursion limit: it refuses to parse,
        // and the planner says why.
        let deeper = (0..60).fold("SELECT 1".to_owned(), |q, _| format!("SELECT * FROM ({q})"));
        assert!(shape::depth(&deeper).is_none());
        let list = (0..5000).map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        assert!(depth(&format!("SELECT 1 WHERE 1 IN ({list})")) < 10, "a list does not nest");
        for sql in STANDARD.iter().map(|r| r.sql) {
            assert!(check_shape(sql).is_ok(), "{sql}");
        }
        assert!(matches!(check_shape(&format!("SELECT {}", chain("1", "+", 129))), Err(ReportError::Limit(_))));
        assert!(check_shape(&format!("SELECT {}", chain("1", "+", 100))).is_ok());
        assert!(shape::depth("SELEC nonsense (((").is_none(), "left to the planner to explain");
    }

    proptest! {
        #[test]
        fn the_shape_check_never_panics(sql in "\\PC{0,200}", ops in "[-+*/%|&<>=!~ ()0-9a-zA-Z',.]{0,400}") {
            let _ = check_shape(&sql);
            let _ = check_shape(&format!("SELECT {ops}"));
        }
    }
}
