//! Parquet export of the event log for analysts.
//!
//! Layout (Hive-style partitions, which pyarrow, DuckDB, Spark and
//! DataFusion read as columns `tenant_id` and `day`):
//!
//! ```text
//! DIR/events/tenant_id=acme/day=2026-09-21/part-00000000000000000042.parquet
//! DIR/export-state.json      the log cursor the last export reached
//! ```
//!
//! Incremental: each run exports only the events after the cursor in
//! `export-state.json` and writes new part files (named by their first
//! event's position), never rewriting old ones; a day that received events
//! since gets one more part. Files are written under a temporary name and
//! renamed once complete, and the state is saved after every file is in
//! place: an interrupted run leaves no partial file, and the next run
//! exports the same events again.
//!
//! The read models analysts need beside the log — `sessions` and `agents`
//! (`queue_agents`) — are written as snapshots on every export
//! ([`export_read_models`]): `DIR/sessions/tenant_id=…/sessions.parquet`,
//! replaced whole (a session's row changes until it ends). Together with
//! `events` they are the tables of [`crate::reports`], and the same files
//! DuckDB or pyarrow read.
//!
//! Days are days of `occurred_at` in UTC. Payloads have their personal
//! fields masked ([`witness_schemas::mask_personal`]): an analyst's export
//! carries no customer's words or names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::{
    FixedSizeBinaryBuilder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use witness_engine::EventStore;
use witness_schemas::{mask_personal, Cursor, RecordedEvent, TenantId};

use crate::{Projector, Value};

/// The export state file in the output directory.
pub const STATE_FILE: &str = "export-state.json";

/// Rows per Parquet row group (and per Arrow batch written).
pub(crate) const ROW_GROUP: usize = 65_536;

/// Events read from the store per page.
pub(crate) const PAGE: usize = 10_000;

/// Part files open at once (each holds up to a row group in memory); the
/// log is mostly in time order, so a run rarely writes to more than one day
/// per tenant at a time. The least recently written part is closed to make
/// room; an event of its day arriving later opens another part.
const OPEN_PARTS: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] witness_engine::StoreError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("writing Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("building Arrow columns: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    #[error("{path} is not an export state this version can read: {source}")]
    State { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    Projection(#[from] crate::ProjectionError),
    #[error("{dir} holds an export of {held}; exporting {asked} into it would leave holes — use another directory")]
    OtherTenant { dir: PathBuf, held: String, asked: String },
    #[error("{0} exists: an audit export is never overwritten — choose another directory or move it away")]
    Exists(PathBuf),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_owned(), source }
}

/// What `export-state.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportState {
    /// The last event read (`None`: nothing yet).
    pub cursor: Option<Cursor>,
    /// The tenant the directory holds, if it was exported for one only.
    pub tenant: Option<String>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub events: u64,
    /// The part files written, relative to the output directory.
    pub files: Vec<PathBuf>,
    pub state: ExportState,
}

/// The Arrow schema of an exported event (the partition columns
/// `tenant_id` and `day` come from the directory names).
pub fn event_schema() -> SchemaRef {
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("position", DataType::Int64, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("stream_id", DataType::Utf8, false),
        Field::new("stream_version", DataType::Int64, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("schema_version", DataType::Int32, false),
        Field::new("occurred_at", time.clone(), false),
        Field::new("recorded_at", time, false),
        Field::new("actor_kind", DataType::Utf8, false),
        Field::new("actor_id", DataType::Utf8, true),
        Field::new("correlation_id", DataType::Utf8, false),
        Field::new("causation_id", DataType::Utf8, true),
        Field::new("payload", DataType::Utf8, false),
        Field::new("hash", DataType::FixedSizeBinary(32), false),
    ]))
}

/// Column builders for one part file's next row group (or, with the
/// audit columns, one audit export's: see [`crate::audit`]).
pub(crate) struct Columns {
    position: Int64Builder,
    event_id: StringBuilder,
    stream_id: StringBuilder,
    stream_version: Int64Builder,
    event_type: StringBuilder,
    schema_version: Int32Builder,
    occurred_at: TimestampMicrosecondBuilder,
    recorded_at: TimestampMicrosecondBuilder,
    actor_kind: StringBuilder,
    actor_id: StringBuilder,
    correlation_id: StringBuilder,
    causation_id: StringBuilder,
    payload: StringBuilder,
    hash: FixedSizeBinaryBuilder,
    pub(crate) rows: usize,
    /// Payloads have their personal fields masked.
    mask: bool,
    /// `tenant_id` and `prev_hash`, for audit exports (which are not
    /// partitioned by tenant and are checked link by link).
    audit: Option<(StringBuilder, FixedSizeBinaryBuilder)>,
}

impl Columns {
    pub(crate) fn audit(mask: bool) -> Self {
        Self { mask, audit: Some((StringBuilder::new(), FixedSizeBinaryBuilder::new(32))), ..Self::new() }
    }

    fn new() -> Self {
        Self {
            position: Int64Builder::new(),
            event_id: StringBuilder::new(),
            stream_id: StringBuilder::new(),
            stream_version: Int64Builder::new(),
            event_type: StringBuilder::new(),
            schema_version: Int32Builder::new(),
            occurred_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            recorded_at: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            actor_kind: StringBuilder::new(),
            actor_id: StringBuilder::new(),
            correlation_id: StringBuilder::new(),
            causation_id: StringBuilder::new(),
            payload: StringBuilder::new(),
            hash: FixedSizeBinaryBuilder::new(32),
            rows: 0,
            mask: true,
            audit: None,
        }
    }

    pub(crate) fn push(&mut self, e: &RecordedEvent) -> Result<(), ExportError> {
        self.position.append_value(e.position as i64);
        self.event_id.append_value(e.event_id.to_string());
        self.stream_id.append_value(e.stream_id.to_string());
        self.stream_version.append_value(e.stream_version as i64);
        self.event_type.append_value(&e.event_type);
        self.schema_version.append_value(e.schema_version as i32);
        self.occurred_at.append_value(e.occurred_at.timestamp_micros());
        self.recorded_at.append_value(e.recorded_at.timestamp_micros());
        self.actor_kind.append_value(e.actor.kind.as_str());
        self.actor_id.append_option(e.actor.id.as_deref());
        self.correlation_id.append_value(e.correlation_id.to_string());
        self.causation_id.append_option(e.causation_id.map(|id| id.to_string()));
        if self.mask {
            self.payload.append_value(masked(&e.payload));
        } else {
            self.payload.append_value(&e.payload);
        }
        self.hash.append_value(e.hash)?;
        if let Some((tenant_id, prev_hash)) = &mut self.audit {
            tenant_id.append_value(e.tenant_id.as_str());
            prev_hash.append_value(e.prev_hash)?;
        }
        self.rows += 1;
        Ok(())
    }

    pub(crate) fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch, ExportError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.position.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.stream_id.finish()),
            Arc::new(self.stream_version.finish()),
            Arc::new(self.event_type.finish()),
            Arc::new(self.schema_version.finish()),
            Arc::new(self.occurred_at.finish()),
            Arc::new(self.recorded_at.finish()),
            Arc::new(self.actor_kind.finish()),
            Arc::new(self.actor_id.finish()),
            Arc::new(self.correlation_id.finish()),
            Arc::new(self.causation_id.finish()),
            Arc::new(self.payload.finish()),
            Arc::new(self.hash.finish()),
        ];
        if let Some((tenant_id, prev_hash)) = &mut self.audit {
            columns.push(Arc::new(tenant_id.finish()));
            columns.push(Arc::new(prev_hash.finish()));
        }
        self.rows = 0;
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    }
}

/// The payload with its personal fields masked (the stored JSON text when
/// it has none to mask).
fn masked(payload: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(payload) else { return payload.to_owned() };
    let before = value.clone();
    mask_personal(&mut value);
    if value == before {
        payload.to_owned()
    } else {
        value.to_string()
    }
}

/// One part file being written.
struct Part {
    /// Relative to the output directory.
    path: PathBuf,
    tmp: PathBuf,
    writer: ArrowWriter<std::fs::File>,
    columns: Columns,
    last_used: u64,
}

impl Part {
    fn flush(&mut self, schema: &SchemaRef) -> Result<(), ExportError> {
        if self.columns.rows > 0 {
            let batch = self.columns.finish(schema)?;
            self.writer.write(&batch)?;
        }
        Ok(())
    }

    /// Writes what is buffered and the footer; returns (temporary file,
    /// final path relative to the output directory) for publishing.
    fn close(mut self, schema: &SchemaRef) -> Result<(PathBuf, PathBuf), ExportError> {
        self.flush(schema)?;
        self.writer.close()?;
        Ok((self.tmp, self.path))
    }
}

/// The state of the export in `dir` (the default state if there is none).
pub fn read_state(dir: &Path) -> Result<ExportState, ExportError> {
    let path = dir.join(STATE_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ExportError::State { path, source }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ExportState::default()),
        Err(e) => Err(io(&path)(e)),
    }
}

fn write_state(dir: &Path, state: &ExportState) -> Result<(), ExportError> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    std::fs::write(&tmp, serde_json::to_vec_pretty(state).expect("state serialises")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io(&path))
}

/// Removes the temporary files an interrupted run left under `dir`.
fn remove_leftovers(dir: &Path) -> Result<(), ExportError> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(()) };
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        if entry.file_type().map_err(io(&path))?.is_dir() {
            remove_leftovers(&path)?;
        } else if path.extension().is_some_and(|x| x == "tmp") {
            std::fs::remove_file(&path).map_err(io(&path))?;
        }
    }
    Ok(())
}

pub(crate) fn properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP))
        .build()
}

/// Exports the events of `store` (of `tenant` only, if given) that the
/// previous export into `dir` did not, as described in the module docs;
/// `progress` gets the number of events read so far.
pub async fn export_events(
    store: &EventStore,
    dir: &Path,
    tenant: Option<&TenantId>,
    mut progress: impl FnMut(u64),
) -> Result<ExportReport, ExportError> {
    let state = read_state(dir)?;
    let asked = tenant.map(|t| t.to_string());
    if state.cursor.is_some() && state.tenant != asked {
        let name = |t: &Option<String>| t.as_ref().map_or("every tenant".to_owned(), |t| format!("tenant {t}"));
        return Err(ExportError::OtherTenant { dir: dir.to_owned(), held: name(&state.tenant), asked: name(&asked) });
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    remove_leftovers(dir)?;
    let schema = event_schema();
    let properties = properties();
    let mut open: HashMap<(String, String), Part> = HashMap::new();
    let mut closed: Vec<(PathBuf, PathBuf)> = Vec::new();
    let mut cursor = state.cursor.unwrap_or(Cursor::START);
    let (mut read, mut exported, mut tick) = (0u64, 0u64, 0u64);
    loop {
        let page = store.read_all(cursor, PAGE).await?;
        let Some(last) = page.last() else { break };
        cursor = last.cursor();
        read += page.len() as u64;
        for e in page.iter().filter(|e| tenant.is_none_or(|t| &e.tenant_id == t)) {
            tick += 1;
            let key = (e.tenant_id.to_string(), e.occurred_at.format("%Y-%m-%d").to_string());
            if !open.contains_key(&key) {
                if open.len() >= OPEN_PARTS {
                    let oldest = open.iter().min_by_key(|(_, p)| p.last_used).map(|(k, _)| k.clone());
                    if let Some(part) = oldest.and_then(|k| open.remove(&k)) {
                        closed.push(part.close(&schema)?);
                    }
                }
                let relative = PathBuf::from("events")
                    .join(format!("tenant_id={}", key.0))
                    .join(format!("day={}", key.1))
                    .join(format!("part-{:020}.parquet", e.position));
                let path = dir.join(&relative);
                let parent = path.parent().expect("a part file has a directory");
                std::fs::create_dir_all(parent).map_err(io(parent))?;
                let tmp = path.with_extension("parquet.tmp");
                let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
                let writer = ArrowWriter::try_new(file, schema.clone(), Some(properties.clone()))?;
                open.insert(key.clone(), Part { path: relative, tmp, writer, columns: Columns::new(), last_used: 0 });
            }
            let part = open.get_mut(&key).expect("just opened");
            part.last_used = tick;
            part.columns.push(e)?;
            if part.columns.rows >= ROW_GROUP {
                part.flush(&schema)?;
            }
            exported += 1;
        }
        progress(read);
    }
    // Every file complete and in place before the state moves on.
    for part in open.into_values() {
        closed.push(part.close(&schema)?);
    }
    let mut files = Vec::new();
    for (tmp, relative) in closed {
        let path = dir.join(&relative);
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        files.push(relative);
    }
    files.sort();
    let state = ExportState { cursor: (read > 0).then_some(cursor).or(state.cursor), tenant: asked };
    write_state(dir, &state)?;
    Ok(ExportReport { events: exported, files, state })
}

fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// A read model's column as Arrow sees it.
#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Text,
    Int,
    Time,
}

pub(crate) const SESSION_COLUMNS: &[(&str, Kind)] = &[
    ("session_id", Kind::Text),
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

pub(crate) const AGENT_COLUMNS: &[(&str, Kind)] = &[
    ("agent_id", Kind::Text),
    ("presence", Kind::Text),
    ("capacity", Kind::Int),
    ("skill_groups", Kind::Text),
    ("load", Kind::Int),
    ("updated_at", Kind::Time),
];

pub(crate) const QA_COLUMNS: &[(&str, Kind)] = &[
    ("evaluation_id", Kind::Text),
    ("session_id", Kind::Text),
    ("evaluator_id", Kind::Text),
    ("score", Kind::Int),
    ("evaluated_at", Kind::Time),
];

pub(crate) fn schema_of(columns: &[(&str, Kind)]) -> SchemaRef {
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
pub(crate) fn batch_of(columns: &[(&str, Kind)], rows: &[Vec<Value>]) -> Result<RecordBatch, arrow_schema::ArrowError> {
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

/// A read model written as a snapshot per tenant.
pub(crate) struct Snapshot {
    /// The table's name in reports, and its directory in the export.
    pub name: &'static str,
    /// The read model's table.
    table: &'static str,
    pub columns: &'static [(&'static str, Kind)],
}

pub(crate) const SNAPSHOTS: &[Snapshot] = &[
    Snapshot { name: "sessions", table: "sessions", columns: SESSION_COLUMNS },
    Snapshot { name: "agents", table: "queue_agents", columns: AGENT_COLUMNS },
    Snapshot { name: "qa_evaluations", table: "qa_evaluations", columns: QA_COLUMNS },
];

/// Writes the snapshots of the read models (see the module docs) for every
/// tenant, or `tenant` only; returns the files written, relative to `dir`.
/// Call it after [`export_events`], which checks that `dir` holds the same
/// tenants.
pub async fn export_read_models(
    projector: &Projector,
    dir: &Path,
    tenant: Option<&TenantId>,
) -> Result<Vec<PathBuf>, ExportError> {
    let mut files = Vec::new();
    for snapshot in SNAPSHOTS {
        let names: Vec<&str> = std::iter::once("tenant_id").chain(snapshot.columns.iter().map(|c| c.0)).collect();
        let mut by_tenant: std::collections::BTreeMap<String, Vec<Vec<Value>>> = Default::default();
        for mut row in projector.rows(snapshot.table, &names, tenant).await? {
            let t = row.remove(0).text();
            by_tenant.entry(t).or_default().push(row);
        }
        for (t, rows) in by_tenant {
            let relative =
                PathBuf::from(snapshot.name).join(format!("tenant_id={t}")).join(format!("{}.parquet", snapshot.name));
            let path = dir.join(&relative);
            let parent = path.parent().expect("a snapshot has a directory");
            std::fs::create_dir_all(parent).map_err(io(parent))?;
            let tmp = path.with_extension("parquet.tmp");
            let batch = batch_of(snapshot.columns, &rows)?;
            let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties()))?;
            writer.write(&batch)?;
            writer.close()?;
            std::fs::rename(&tmp, &path).map_err(io(&path))?;
            files.push(relative);
        }
    }
    Ok(files)
}
