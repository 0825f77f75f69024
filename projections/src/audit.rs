//! Audit export: a slice of the event log — one tenant's or all, between
//! two times — as one Parquet, JSON-lines or CSV file for compliance
//! officers, with a manifest beside it.
//!
//! ```text
//! DIR/audit-acme-20261101T000000Z-20261201T000000Z.jsonl
//! DIR/audit-acme-20261101T000000Z-20261201T000000Z.jsonl.manifest.json
//! ```
//!
//! Every column of the envelope is kept, with `tenant_id`, `hash` and
//! `prev_hash` (hex in JSON and CSV), so that each row can be matched to the
//! chain `witness verify` checks. Payloads have their personal fields masked
//! unless the export is `unmasked` — which only callers whose role sees
//! personal data may ask for (the API decides from the token; the CLI from
//! `--unmasked`), and which the caller records as an `AuditExported` event.
//! Payloads are as read, not as stored: `hash` covers a session event's
//! personal fields encrypted (`witness_engine::shred`), so rows are matched
//! to the chain by their hashes, not re-hashed.
//!
//! Nothing is overwritten: an existing file of the same name is an error.
//! The file is written under a temporary name; the caller records the
//! export, then [`PendingAudit::publish`] renames the file and writes the
//! manifest (with the file's SHA-256).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use witness_engine::EventStore;
use witness_schemas::{Cursor, TenantId};

use crate::export::{event_schema, io, properties, Columns, ExportError, PAGE, ROW_GROUP};

/// The file formats of an audit export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    Parquet,
    Jsonl,
    Csv,
}

impl AuditFormat {
    pub fn name(self) -> &'static str {
        match self {
            AuditFormat::Parquet => "parquet",
            AuditFormat::Jsonl => "jsonl",
            AuditFormat::Csv => "csv",
        }
    }

    /// The MIME type of the file.
    pub fn content_type(self) -> &'static str {
        match self {
            AuditFormat::Parquet => "application/vnd.apache.parquet",
            AuditFormat::Jsonl => "application/jsonl",
            AuditFormat::Csv => "text/csv; charset=utf-8",
        }
    }
}

impl std::str::FromStr for AuditFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "parquet" => Ok(AuditFormat::Parquet),
            "jsonl" => Ok(AuditFormat::Jsonl),
            "csv" => Ok(AuditFormat::Csv),
            other => Err(format!("the audit export format is parquet, jsonl or csv, not {other:?}")),
        }
    }
}

/// A bound of an audit export as people write it: an RFC 3339 time, or a
/// day (its midnight UTC).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc())
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time (2026-11-24T09:00:00Z) nor a day (2026-11-24)"))
}

/// Which events, and how.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// One tenant's events, or every tenant's.
    pub tenant: Option<TenantId>,
    /// `occurred_at` from (inclusive) and to (exclusive).
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Personal fields left in (see the module docs).
    pub unmasked: bool,
}

/// What `….manifest.json` holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AuditManifest {
    /// The file's name, in the same directory.
    pub file: String,
    pub format: String,
    pub tenant: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub unmasked: bool,
    pub events: u64,
    /// The log positions of the first and last event exported.
    pub first_position: Option<u64>,
    pub last_position: Option<u64>,
    /// SHA-256 of the file, hex.
    pub sha256: String,
    pub written_at: DateTime<Utc>,
}

/// The columns of an audit export: the analytics export's, then
/// `tenant_id` and `prev_hash`.
pub fn audit_schema() -> SchemaRef {
    let mut fields: Vec<Field> = event_schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("tenant_id", DataType::Utf8, false));
    fields.push(Field::new("prev_hash", DataType::FixedSizeBinary(32), false));
    Arc::new(Schema::new(fields))
}

/// The file name for `q` in `format`.
pub fn file_name(q: &AuditQuery, format: AuditFormat) -> String {
    let time =
        |t: Option<DateTime<Utc>>, none: &str| t.map_or(none.to_owned(), |t| t.format("%Y%m%dT%H%M%SZ").to_string());
    let tenant = q.tenant.as_ref().map_or("all".to_owned(), |t| t.to_string());
    format!("audit-{tenant}-{}-{}.{}", time(q.from, "start"), time(q.to, "end"), format.name())
}

enum Sink {
    Parquet(ArrowWriter<std::fs::File>),
    Csv(arrow_csv::Writer<std::fs::File>),
    Jsonl(arrow_json::LineDelimitedWriter<std::fs::File>),
}

impl Sink {
    fn new(format: AuditFormat, file: std::fs::File, schema: &SchemaRef) -> Result<Self, ExportError> {
        Ok(match format {
            AuditFormat::Parquet => Sink::Parquet(ArrowWriter::try_new(file, schema.clone(), Some(properties()))?),
            AuditFormat::Csv => Sink::Csv(arrow_csv::WriterBuilder::new().with_header(true).build(file)),
            AuditFormat::Jsonl => Sink::Jsonl(arrow_json::LineDelimitedWriter::new(file)),
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        match self {
            Sink::Parquet(w) => w.write(batch)?,
            Sink::Csv(w) => w.write(batch)?,
            Sink::Jsonl(w) => w.write(batch)?,
        }
        Ok(())
    }

    /// Writes what remains and syncs the file.
    fn finish(self, path: &Path) -> Result<(), ExportError> {
        let file = match self {
            Sink::Parquet(w) => w.into_inner()?,
            Sink::Csv(w) => w.into_inner(),
            Sink::Jsonl(mut w) => {
                w.finish()?;
                w.into_inner()
            }
        };
        file.sync_all().map_err(io(path))
    }
}

/// An audit export written under a temporary name, not yet in place:
/// [`PendingAudit::publish`] renames it and writes the manifest; dropping it
/// removes the file. The caller records the export (an `AuditExported`
/// event, which needs the file's hash) in between, so that no export exists
/// that the log does not show.
#[derive(Debug)]
pub struct PendingAudit {
    pub manifest: AuditManifest,
    /// The complete file, under its temporary name.
    pub tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    manifest_path: std::path::PathBuf,
    published: bool,
}

impl PendingAudit {
    /// Puts the file in place and writes its manifest beside it.
    pub fn publish(mut self) -> Result<AuditManifest, ExportError> {
        std::fs::rename(&self.tmp, &self.path).map_err(io(&self.path))?;
        self.published = true;
        let bytes = serde_json::to_vec_pretty(&self.manifest).expect("a manifest serialises");
        let mut file = std::fs::File::create(&self.manifest_path).map_err(io(&self.manifest_path))?;
        file.write_all(&bytes).map_err(io(&self.manifest_path))?;
        Ok(self.manifest.clone())
    }
}

impl Drop for PendingAudit {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Writes the events `q` selects into `dir` as one `format` file, under a
/// temporary name (see [`PendingAudit`] and the module docs); `progress`
/// gets the number of log events read so far. Refuses, writing nothing, a
/// range that ends before it starts and a file that already exists.
pub async fn export_audit(
    store: &EventStore,
    dir: &Path,
    q: &AuditQuery,
    format: AuditFormat,
    mut progress: impl FnMut(u64),
) -> Result<PendingAudit, ExportError> {
    if let (Some(from), Some(to)) = (q.from, q.to) {
        if from >= to {
            return Err(ExportError::Invalid(format!("the range ends ({to}) before it starts ({from})")));
        }
    }
    let name = file_name(q, format);
    let path = dir.join(&name);
    let manifest_path = dir.join(format!("{name}.manifest.json"));
    for p in [&path, &manifest_path] {
        if p.exists() {
            return Err(ExportError::Exists(p.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let tmp = dir.join(format!("{name}.tmp"));
    let mut pending = PendingAudit {
        manifest: AuditManifest {
            file: name,
            format: format.name().to_owned(),
            tenant: q.tenant.as_ref().map(|t| t.to_string()),
            from: q.from,
            to: q.to,
            unmasked: q.unmasked,
            events: 0,
            first_position: None,
            last_position: None,
            sha256: String::new(),
            written_at: Utc::now(),
        },
        tmp,
        path,
        manifest_path,
        published: false,
    };
    // From here on, an error drops `pending`, which removes the file.
    let (events, first, last) = write_file(store, &pending.tmp, q, format, &mut progress).await?;
    pending.manifest.sha256 = witness_engine::chain::sha256_file(&pending.tmp).map_err(io(&pending.tmp))?.1;
    pending.manifest.events = events;
    pending.manifest.first_position = first;
    pending.manifest.last_position = last;
    pending.manifest.written_at = Utc::now();
    Ok(pending)
}

/// The file's rows: (events, first position, last position).
async fn write_file(
    store: &EventStore,
    path: &Path,
    q: &AuditQuery,
    format: AuditFormat,
    progress: &mut impl FnMut(u64),
) -> Result<(u64, Option<u64>, Option<u64>), ExportError> {
    let schema = audit_schema();
    let file = std::fs::File::create(path).map_err(io(path))?;
    let mut sink = Sink::new(format, file, &schema)?;
    if format == AuditFormat::Csv {
        // The header, even for an export with no rows.
        sink.write(&RecordBatch::new_empty(schema.clone()))?;
    }
    let mut columns = Columns::audit(!q.unmasked);
    let (mut cursor, mut read, mut events) = (Cursor::START, 0u64, 0u64);
    let (mut first, mut last) = (None, None);
    loop {
        let page = store.read_all(cursor, PAGE).await?;
        let Some(end) = page.last() else { break };
        cursor = end.cursor();
        read += page.len() as u64;
        let wanted = page.iter().filter(|e| {
            q.tenant.as_ref().is_none_or(|t| &e.tenant_id == t)
                && q.from.is_none_or(|from| e.occurred_at >= from)
                && q.to.is_none_or(|to| e.occurred_at < to)
        });
        for e in wanted {
            columns.push(e)?;
            first.get_or_insert(e.position);
            last = Some(e.position);
            events += 1;
            if columns.rows >= ROW_GROUP {
                sink.write(&columns.finish(&schema)?)?;
            }
        }
        progress(read);
    }
    if columns.rows > 0 {
        sink.write(&columns.finish(&schema)?)?;
    }
    sink.finish(path)?;
    Ok((events, first, last))
}
