//! Report queries in a process of their own.
//!
//! A DataFusion query runs inside whatever process plans it, and not every
//! cost it can run up is bounded there: a scalar function such as
//! `repeat('x', 2000000000)` allocates outside the memory pool, and a join
//! that never yields ignores cancellation. A server therefore runs each
//! query in a child process ([`Worker`]) that limits its own address space
//! and CPU time (`setrlimit`), dies with its parent, and is killed when the
//! query's time is up: the worst a query can do is end its own process.
//!
//! The protocol, over the child's standard input and output:
//!
//! - in: one [`Job`] as JSON;
//! - out: one line of JSON (`{"status":"answer","truncated":…}` or
//!   `{"status":"failed","kind":…,"message":…}`), then, after an answer's
//!   line, the answer as an Arrow IPC stream.
//!
//! The child is the `witness` binary itself (`witness report-worker`), which
//! calls [`main`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use witness_schemas::TenantId;

use super::{check_shape, Answer, ReportError, Reports};
use crate::export;

/// One query, as the parent hands it to a worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub export_dir: PathBuf,
    pub tenant: Option<TenantId>,
    pub sql: String,
    pub row_limit: usize,
    pub timeout_ms: u64,
    /// The worker's address-space limit, in bytes; DataFusion's memory pool
    /// gets half of it.
    pub address_space: u64,
}

/// What a worker says before the answer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
enum Header {
    Answer { truncated: bool },
    Failed { kind: Failure, message: String },
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Failure {
    Query,
    NoExport,
    Limit,
    Timeout,
    Other,
}

/// Where report queries run.
#[derive(Debug, Clone, Default)]
pub enum Runner {
    /// In the calling process (the command line, tests): bounded by text
    /// and shape, the memory pool, and a timeout that takes effect at the
    /// query's next yield.
    #[default]
    InProcess,
    /// In a [`Worker`] process per query: bounded whatever the query does.
    Worker(Arc<Worker>),
}

impl Runner {
    /// Runs `sql` over the export in `export_dir`, for `tenant` only if given.
    pub async fn sql(
        &self,
        export_dir: &Path,
        tenant: Option<&TenantId>,
        sql: &str,
        row_limit: usize,
        timeout: Duration,
    ) -> Result<Answer, ReportError> {
        match self {
            Runner::InProcess => Reports::open(export_dir, tenant).await?.sql(sql, row_limit, timeout).await,
            Runner::Worker(worker) => worker.sql(export_dir, tenant, sql, row_limit, timeout).await,
        }
    }
}

/// Starts worker processes, at most `slots` at once.
#[derive(Debug)]
pub struct Worker {
    program: PathBuf,
    args: Vec<String>,
    address_space: u64,
    slots: Semaphore,
    /// How long a query waits for a free worker before [`ReportError::Busy`].
    queue_wait: Duration,
}

/// The most of a worker's output that is read: far more than any answer
/// the API's row limit lets through.
const MAX_OUTPUT: u64 = 512 << 20;

impl Worker {
    /// Workers run as `program args…`, at most `slots` at a time, each
    /// limited to `address_space` bytes of memory.
    pub fn new(program: impl Into<PathBuf>, args: &[&str], slots: usize, address_space: u64) -> Self {
        Self {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            address_space,
            slots: Semaphore::new(slots.max(1)),
            queue_wait: Duration::from_secs(5),
        }
    }

    async fn sql(
        &self,
        export_dir: &Path,
        tenant: Option<&TenantId>,
        sql: &str,
        row_limit: usize,
        timeout: Duration,
    ) -> Result<Answer, ReportError> {
        // What can be refused without a process is refused here.
        check_shape(sql)?;
        if !export_dir.join(export::STATE_FILE).exists() {
            return Err(ReportError::NoExport(export_dir.to_owned()));
        }
        let _slot = tokio::time::timeout(self.queue_wait, self.slots.acquire())
            .await
            .map_err(|_| ReportError::Busy)?
            .expect("the semaphore is never closed");
        let export_dir = std::path::absolute(export_dir)
            .map_err(|e| ReportError::Worker(format!("{}: {e}", export_dir.display())))?;
        let job = Job {
            export_dir,
            tenant: tenant.cloned(),
            sql: sql.to_owned(),
            row_limit,
            timeout_ms: timeout.as_millis() as u64,
            address_space: self.address_space,
        };
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            // Fewer malloc arenas: less address space reserved, more left
            // for the query.
            .env("MALLOC_ARENA_MAX", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ReportError::Worker(format!("starting {}: {e}", self.program.display())))?;
        let mut stdin = child.stdin.take().expect("piped");
        let (mut stdout, mut stderr) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
        let input = serde_json::to_vec(&job).expect("a job is JSON");
        let run = async {
            stdin.write_all(&input).await?;
            drop(stdin);
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let mut limited = (&mut stdout).take(MAX_OUTPUT);
            let mut limited_err = (&mut stderr).take(64 * 1024);
            tokio::try_join!(limited.read_to_end(&mut out), limited_err.read_to_end(&mut err))?;
            let status = child.wait().await?;
            Ok::<_, std::io::Error>((status, out, err))
        };
        // The worker stops itself at the same time; the parent's deadline
        // is the one that holds, a moment later.
        let deadline = timeout + Duration::from_secs(1);
        let (status, out, err) = match tokio::time::timeout(deadline, run).await {
            Ok(Ok(done)) => done,
            Ok(Err(e)) => return Err(ReportError::Worker(e.to_string())),
            Err(_) => {
                let _ = child.kill().await;
                return Err(ReportError::Timeout(timeout));
            }
        };
        let stderr = String::from_utf8_lossy(&err);
        let newline = out.iter().position(|&b| b == b'\n');
        let header = newline.and_then(|n| serde_json::from_slice::<Header>(&out[..n]).ok());
        match header {
            Some(Header::Answer { truncated }) => {
                let reader = arrow_ipc::reader::StreamReader::try_new(&out[newline.expect("a header") + 1..], None)?;
                let schema = reader.schema();
                let batches = reader.collect::<Result<Vec<_>, _>>()?;
                Ok(Answer { schema, batches, truncated })
            }
            Some(Header::Failed { kind, message }) => Err(match kind {
                Failure::Query => ReportError::Query(datafusion::error::DataFusionError::Plan(message)),
                Failure::NoExport => ReportError::NoExport(job.export_dir),
                Failure::Limit => ReportError::Limit(message),
                Failure::Timeout => ReportError::Timeout(timeout),
                Failure::Other => ReportError::Worker(message),
            }),
            None => Err(self.died(status, &stderr, timeout)),
        }
    }

    /// Why a worker that wrote no header ended.
    fn died(&self, status: std::process::ExitStatus, stderr: &str, timeout: Duration) -> ReportError {
        use std::os::unix::process::ExitStatusExt;
        let last = stderr.lines().last().unwrap_or_default();
        tracing::warn!(%status, stderr = last, "a report worker ended without an answer");
        let mib = self.address_space >> 20;
        if stderr.contains("memory allocation of") || stderr.contains("Resources exhausted") {
            ReportError::Limit(format!("the query needed more memory than a report may use ({mib} MiB)"))
        } else if stderr.contains("overflowed its stack") {
            ReportError::Limit("the query is nested too deeply to plan".into())
        } else if status.signal() == Some(nix::sys::signal::Signal::SIGXCPU as i32) {
            ReportError::Timeout(timeout)
        } else {
            ReportError::Limit(format!(
                "the query stopped its worker ({status}); it may need more memory than a report may use ({mib} MiB)"
            ))
        }
    }
}

/// The worker's side: reads a [`Job`] on standard input, limits this
/// process, runs the query and writes the answer on standard output (see
/// the module docs). Meant to be all a process does.
pub fn main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().take(1 << 20).read_to_end(&mut input) {
        return fail(Failure::Other, &format!("reading the job: {e}"));
    }
    let job: Job = match serde_json::from_slice(&input) {
        Ok(job) => job,
        Err(e) => return fail(Failure::Other, &format!("the job is not valid: {e}")),
    };
    if let Err(e) = limit_self(&job) {
        return fail(Failure::Other, &format!("limiting the worker: {e}"));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => return fail(Failure::Other, &format!("starting: {e}")),
    };
    let timeout = Duration::from_millis(job.timeout_ms);
    let answer = runtime.block_on(async {
        let memory = (job.address_space / 2) as usize;
        let tables = Reports::open_with_memory(&job.export_dir, job.tenant.as_ref(), memory).await?;
        tables.sql(&job.sql, job.row_limit, timeout).await
    });
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            let kind = match &e {
                ReportError::Query(q) if q.to_string().contains("Resources exhausted") => Failure::Limit,
                ReportError::Query(_) => Failure::Query,
                ReportError::NoExport(_) => Failure::NoExport,
                ReportError::Limit(_) => Failure::Limit,
                ReportError::Timeout(_) => Failure::Timeout,
                _ => Failure::Other,
            };
            return fail(kind, &e.to_string());
        }
    };
    let mut out = std::io::stdout().lock();
    let written = (|| {
        serde_json::to_writer(&mut out, &Header::Answer { truncated: answer.truncated })?;
        out.write_all(b"\n")?;
        let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &answer.schema)?;
        for b in &answer.batches {
            w.write(b)?;
        }
        w.finish()?;
        drop(w);
        out.flush()?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })();
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing the answer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fail(kind: Failure, message: &str) -> ExitCode {
    let header = Header::Failed { kind, message: message.to_owned() };
    let mut out = std::io::stdout().lock();
    let _ = serde_json::to_writer(&mut out, &header);
    let _ = out.write_all(b"\n");
    let _ = out.flush();
    ExitCode::FAILURE
}

/// The worker's own limits: its address space, its CPU time (a little past
/// the query's timeout), no files written, no core dumps, and death with
/// its parent.
fn limit_self(job: &Job) -> nix::Result<()> {
    use nix::sys::resource::{setrlimit, Resource};
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
    setrlimit(Resource::RLIMIT_AS, job.address_space, job.address_space)?;
    let cpu = job.timeout_ms.div_ceil(1000) + 2;
    setrlimit(Resource::RLIMIT_CPU, cpu, cpu + 1)?;
    setrlimit(Resource::RLIMIT_FSIZE, 0, 0)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)
}
