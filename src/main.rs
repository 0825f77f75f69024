//! `witness`: the one binary. See `witness --help`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use witness_engine::checkpoint::{public_key_path, read_public_key};
use witness_engine::{CheckpointSigner, EventStore, ExpectedVersion, DEFAULT_DATABASE_URL};
use witness_projections::audit::{AuditFormat, AuditQuery};
use witness_schemas::*;

#[derive(Parser)]
#[command(name = "witness", version, about = "Event-sourced audio/video customer service")]
struct Cli {
    /// The event store: sqlite://PATH or postgres://USER@HOST:PORT/DB
    /// [default: sqlite://data/witness.db, embedded].
    #[arg(long, global = true, env = "WITNESS_DATABASE_URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (HTTP API; signs a checkpoint of the log periodically).
    Serve(Box<ServeArgs>),
    /// Media self-tests.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// Tenants and users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check every event's hash chain link and every signed checkpoint.
    /// Exits 1 and names the first bad position if anything was altered.
    Verify {
        /// The trusted checkpoint public key (hex). Default: the .pub beside
        /// data/witness-signing.key, if present.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Check the recording files instead: re-hash every segment the log
        /// names and report missing or altered ones.
        #[arg(long)]
        recordings: bool,
        #[arg(long, default_value = "data/recordings", requires = "recordings")]
        recordings_dir: PathBuf,
        /// Check a review package instead (a tar from
        /// `GET /api/sessions/{id}/review/package`), offline: needs only the
        /// file and --public-key.
        #[arg(long, conflicts_with = "recordings")]
        package: Option<PathBuf>,
    },
    /// Back up the embedded store while it serves: one tar file with the
    /// database as of one moment, the signing and token keys, and the
    /// recordings and uploads. PostgreSQL: use pg_dump (README).
    Backup {
        /// The backup file to write (never overwritten).
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "data/witness-signing.key")]
        key_file: PathBuf,
        #[arg(long, default_value = "data/witness-token.key")]
        token_key_file: PathBuf,
        #[arg(long, default_value = "data/recordings")]
        recordings_dir: PathBuf,
        #[arg(long, default_value = "data/uploads")]
        uploads_dir: PathBuf,
    },
    /// Restore a backup into an empty data directory (checked against its
    /// manifest before anything is put in place).
    Restore {
        /// The file `witness backup` wrote.
        file: PathBuf,
        /// Where to put `witness.db`, the keys, `recordings/` and `uploads/`.
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
    /// Sign a checkpoint over every event not yet covered by one, now.
    Checkpoint {
        #[arg(long, default_value = "data/witness-signing.key")]
        key_file: PathBuf,
    },
    /// Event schemas.
    Schema {
        #[command(subcommand)]
        command: SchemaCommand,
    },
    /// Replay sessions: list them, or show one's timeline and state as of a time.
    Replay {
        #[command(subcommand)]
        command: ReplayCommand,
    },
    /// Export the event log for analysts: Parquet files partitioned by tenant
    /// and day under OUT/events/tenant_id=…/day=…/, personal fields masked.
    /// Incremental: a second run into the same OUT adds only what is new.
    /// `witness export audit …` exports for compliance instead.
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Export {
        #[command(subcommand)]
        audit: Option<ExportCommand>,
        #[arg(long, value_enum, required = true)]
        format: Option<ExportFormat>,
        #[arg(long, required = true)]
        out: Option<PathBuf>,
        /// Export this tenant's events only.
        #[arg(long)]
        tenant: Option<TenantId>,
    },
    /// Retention: delete the recordings and attachments past their tenant's
    /// retention period that no legal hold covers (`serve` does it hourly).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// SQL over Arrow for analysts (DataFusion) over the Parquet export:
    /// `events`, `messages`, `sessions`, `agents`, `qa` as of the last export.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Rebuild read models from position 0 (all, or the one named).
    Rebuild {
        /// sessions, audit_trail, queues, tickets, qa or dual_recordings.
        projection: Option<String>,
    },
    /// Append synthetic events through the real append path: a scripted day
    /// of sessions (--sessions, yesterday), or raw message events (--events).
    /// Seed a store no `witness serve` is running on: a live server's router
    /// would act on the seeded sessions too.
    Seed {
        /// Customers in a scripted day, driven through the deciders and routing.
        #[arg(long, conflicts_with = "events")]
        sessions: Option<usize>,
        /// Agents on duty for --sessions.
        #[arg(long, default_value_t = 10)]
        agents: usize,
        /// Makes the --sessions story reproducible.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// How many raw events in all.
        #[arg(long)]
        events: Option<u64>,
        /// Over how many session streams (raw events).
        #[arg(long, default_value_t = 100)]
        streams: u64,
        /// Events per append (1 to 1000).
        #[arg(long, default_value_t = 100)]
        batch: usize,
        #[arg(long, default_value = "demo")]
        tenant: String,
        /// Print what --sessions did as JSON (the workload's own tally).
        #[arg(long, requires = "sessions")]
        json: bool,
    },
    /// Runs one report query handed over on standard input (what `serve`
    /// starts for each query; see witness_projections::reports::worker).
    #[command(hide = true)]
    ReportWorker,
}

#[derive(Subcommand)]
enum ReplayCommand {
    /// The most recent sessions (from the `sessions` read model, brought up to date first).
    List {
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// One session's timeline and state, as of --at (RFC 3339, e.g. 2026-11-24T10:42:00Z) or now.
    Session {
        id: SessionId,
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The checkpoint signing key; created with its .pub on first start.
    #[arg(long, default_value = "data/witness-signing.key")]
    key_file: PathBuf,
    /// Seconds between signed checkpoints.
    #[arg(long, default_value_t = 60)]
    checkpoint_every: u64,
    /// Kafka bootstrap servers (host:port,…): relay the log to Kafka and
    /// feed the read models from it. Without it, everything stays in process.
    #[arg(long, env = "WITNESS_KAFKA")]
    kafka: Option<String>,
    #[arg(long, default_value = witness_engine::kafka::DEFAULT_TOPIC)]
    kafka_topic: String,
    /// The key that signs API tokens; created on first start.
    #[arg(long, default_value = "data/witness-token.key")]
    token_key_file: PathBuf,
    /// Where uploaded chat files are kept (content-addressed).
    #[arg(long, default_value = "data/uploads")]
    uploads_dir: PathBuf,
    /// The Parquet export (`witness export --format parquet --out DIR`)
    /// that /api/reports queries.
    #[arg(long, default_value = "data/export")]
    export_dir: PathBuf,
    /// The largest file a chat upload may be, in MiB.
    #[arg(long, default_value_t = 20)]
    max_upload_mib: usize,
    /// The address the SFU's UDP sockets bind to and announce to browsers.
    #[arg(long, default_value = "127.0.0.1", env = "WITNESS_MEDIA_IP")]
    media_ip: std::net::IpAddr,
    /// The address announced instead, when the server is behind a 1:1 NAT.
    #[arg(long, env = "WITNESS_MEDIA_PUBLIC_IP")]
    media_public_ip: Option<std::net::IpAddr>,
    /// Send ICE checks to browsers' private addresses (10/8, 172.16/12,
    /// 192.168/16, 100.64/10, fc00::/7) [default: when the announced media
    /// address is itself private]. Loopback and link-local addresses are
    /// never used.
    #[arg(long)]
    media_private_candidates: Option<bool>,
    /// UDP ports for media, FIRST-LAST: each media thread takes the first
    /// free one (the calls it drives share it).
    #[arg(long, default_value = "50000-50999", value_parser = port_range)]
    media_ports: (u16, u16),
    /// Media threads, each driving its share of the calls on a port of its
    /// own [default: one per core].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    media_threads: Option<u16>,
    /// A STUN or TURN server for browsers (stun:host:port,
    /// turn:host:port?transport=udp); repeat for several.
    #[arg(long = "ice-server")]
    ice_servers: Vec<String>,
    /// The TURN servers' username and credential.
    #[arg(long, env = "WITNESS_TURN_USERNAME", default_value = "")]
    turn_username: String,
    #[arg(long, env = "WITNESS_TURN_CREDENTIAL", default_value = "", hide_env_values = true)]
    turn_credential: String,
    /// Where call recordings are written (per recording, per track).
    #[arg(long, default_value = "data/recordings")]
    recordings_dir: PathBuf,
    /// Record every call from its start (otherwise agents record on
    /// demand), for tenants that set no policy of their own.
    #[arg(long)]
    record_calls: bool,
    /// Seconds between retention sweeps (deleting recordings and
    /// attachments past their tenant's retention, never under a legal hold).
    #[arg(long, default_value_t = 3600)]
    retention_every: u64,
    /// The length of a recording segment, in seconds.
    #[arg(long, default_value_t = 10)]
    segment_seconds: u64,
    /// The face-verification models (`. scripts/deps.sh && need_face_models`
    /// puts them in ~/.cache/witness/face-models, the default). Without
    /// them the server runs, but cannot verify faces.
    #[arg(long, env = "WITNESS_FACE_MODELS")]
    face_models: Option<PathBuf>,
    /// Report queries running at once, each in a worker process of its own
    /// (more wait up to 5 s, then get 429).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    report_workers: u16,
    /// The memory one report worker may use, in MiB; a query that needs
    /// more fails alone.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(256..))]
    report_memory_mib: u64,
    /// Seconds a report query may run before it is stopped.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    report_timeout_secs: u64,
    /// Seconds a client has to send a request's head; a kept-alive
    /// connection idle this long is closed.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,
    /// Seconds a request body may send nothing before it is abandoned.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600))]
    body_timeout_secs: u64,
    /// Connections open at once, in all; more are closed when accepted.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections: u64,
    /// Connections open at once from one address (raise it behind a
    /// reverse proxy, whose connections all come from one address).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..))]
    max_connections_per_address: u64,
    /// Files a customer may upload into one session (more get 429).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    session_upload_files: u32,
    /// MiB a customer may upload into one session in all.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    session_upload_mib: u64,
    /// Visitor tokens one address may take a minute (more get 429).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    visitors_per_minute: u32,
    /// Login attempts one address may make a minute.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..))]
    logins_per_minute: u32,
    /// Failed logins one login may have in 15 minutes; then it waits.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    login_failures: u32,
    /// Serve HTTPS with this certificate chain (PEM, leaf first); read
    /// again on SIGHUP and when the file changes. Needs --tls-key.
    #[arg(long, requires = "tls_key", conflicts_with = "tls_self_signed")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with a self-signed certificate for NAME (a host name or
    /// an IP address), made on first start and kept beside the signing key;
    /// its fingerprints are printed. For trials: browsers warn until told
    /// to trust it.
    #[arg(long, value_name = "NAME")]
    tls_self_signed: Option<String>,
    /// Also listen for plain HTTP here, only to send browsers on to HTTPS
    /// (308 to the same host and path). Needs --tls-cert or --tls-self-signed.
    #[arg(long, value_name = "ADDR")]
    http_redirect_listen: Option<SocketAddr>,
    /// A reverse proxy's address or range (10.0.0.0/8); repeat for several.
    /// Only from these is `X-Forwarded-For` taken as the client's address
    /// (for the limits per address) and `X-Forwarded-Proto: https` as HTTPS.
    #[arg(long = "trusted-proxy", value_name = "CIDR")]
    trusted_proxies: Vec<witness_api::server::Cidr>,
    /// A bearer token that reads /metrics (admins' tokens do too).
    #[arg(long, env = "WITNESS_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
    /// Also serve /metrics here, with no token (for a Prometheus on a
    /// private network; never expose it publicly).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// `/readyz` answers 503 while the read models (or, with --kafka, the
    /// relay) are more than this many events behind the log.
    #[arg(long, default_value_t = 1_000)]
    ready_max_lag: u64,
}

fn port_range(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').ok_or("a range is FIRST-LAST, e.g. 50000-50999")?;
    let (a, b): (u16, u16) =
        (a.trim().parse().map_err(|e| format!("{a}: {e}"))?, b.trim().parse().map_err(|e| format!("{b}: {e}"))?);
    if a == 0 || a > b {
        return Err(format!("{s}: the first port must be 1 or more and not above the last"));
    }
    Ok((a, b))
}

#[derive(Subcommand)]
enum MediaCommand {
    /// Two in-process peers call each other through the real SFU and
    /// recorder with synthetic audio and video (GStreamer test sources):
    /// prints forwarded packets, what each received, and the recorded
    /// segments. Exit 1 if media did not flow or nothing was recorded.
    /// Writes to a store only when `--database-url` (or
    /// WITNESS_DATABASE_URL) names one: the call is then a session of
    /// tenant `selftest` whose record must name every segment with its hash.
    Loopback {
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Where the segments go (`loopback/TRACK/00000.webm`, …).
        #[arg(long)]
        out: PathBuf,
        /// The SFU's UDP ports for the test.
        #[arg(long, default_value = "51000-51099", value_parser = port_range)]
        media_ports: (u16, u16),
        #[arg(long, default_value_t = 10)]
        segment_seconds: u64,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a tenant.
    CreateTenant {
        /// Its id: lowercase letters, digits and -, e.g. `acme-bank`.
        tenant: TenantId,
        /// The name people see.
        #[arg(long)]
        name: String,
    },
    /// Create a user in a tenant. Without WITNESS_PASSWORD in the
    /// environment, a random password is made and printed.
    CreateUser {
        #[arg(long)]
        tenant: TenantId,
        #[arg(long)]
        login: String,
        /// agent, supervisor, compliance or admin.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        #[arg(long)]
        display_name: Option<String>,
    },
    /// List a tenant's users.
    Users {
        #[arg(long)]
        tenant: TenantId,
    },
    /// Put a new key first in the token key file: it signs from the
    /// server's next start; the previous key still verifies the tokens it
    /// signed until they expire (a day at most), older keys are dropped.
    RotateTokenKey {
        #[arg(long, default_value = "data/witness-token.key")]
        token_key_file: PathBuf,
    },
}

fn parse_role(text: &str) -> Result<Role, String> {
    serde_json::from_value(serde_json::Value::from(text))
        .map_err(|_| format!("{text:?}: use agent, supervisor, compliance or admin"))
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Run one read-only SELECT.
    Sql {
        query: String,
        #[command(flatten)]
        options: ReportOptions,
    },
    /// Run a standard report (see `witness report list`).
    Run {
        name: String,
        #[command(flatten)]
        options: ReportOptions,
    },
    /// The standard reports and what each shows.
    List,
}

#[derive(clap::Args)]
struct ReportOptions {
    /// Where `witness export --format parquet` wrote the log.
    #[arg(long, default_value = "data/export")]
    export: PathBuf,
    /// Only this tenant's rows, in every table.
    #[arg(long)]
    tenant: Option<TenantId>,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
    /// At most this many rows (the output says when more matched).
    #[arg(long, default_value_t = 10_000)]
    limit: usize,
    /// Stop a query that runs longer than this many seconds.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    /// The time zone the standard reports tell times in, minutes east of
    /// UTC (tenants' default: Beijing, 480).
    #[arg(long, default_value_t = 480, allow_negative_numbers = true)]
    utc_offset_minutes: i32,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportFormat {
    Table,
    Csv,
    Json,
    /// Arrow IPC stream (binary).
    Arrow,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Sweep once: each deletion is a MediaDeleted event, then the file goes.
    Sweep {
        #[arg(long, default_value = "data/recordings")]
        recordings_dir: PathBuf,
        #[arg(long, default_value = "data/uploads")]
        uploads_dir: PathBuf,
        /// Sweep as of this time (RFC 3339 or a day) instead of now.
        #[arg(long, value_parser = witness_projections::audit::parse_time)]
        at: Option<chrono::DateTime<chrono::Utc>>,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Parquet,
}

#[derive(Subcommand)]
enum ExportCommand {
    /// One file of the log's events — a tenant's, or all — between two
    /// times, every envelope column with `hash` and `prev_hash`, and a
    /// manifest with its SHA-256 beside it. Personal fields are masked
    /// unless --unmasked; an export of one tenant is recorded in its access log
    /// (an `AuditExported` event).
    Audit {
        #[arg(long)]
        tenant: Option<TenantId>,
        /// From this time (RFC 3339, or a day YYYY-MM-DD: its midnight UTC), inclusive.
        #[arg(long, value_parser = witness_projections::audit::parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// To this time, exclusive.
        #[arg(long, value_parser = witness_projections::audit::parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[arg(long, value_enum)]
        format: AuditFormatArg,
        #[arg(long)]
        out: PathBuf,
        /// Leave personal fields in (names, phone numbers, what customers
        /// wrote): for compliance officers. Needs --tenant, and is recorded.
        #[arg(long, requires = "tenant")]
        unmasked: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum AuditFormatArg {
    Parquet,
    Jsonl,
    Csv,
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// Write one JSON Schema file per event type into DIR.
    Export { dir: PathBuf },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WITNESS_LOG").unwrap_or_else(|_| "info,sqlx=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    if let Command::ReportWorker = cli.command {
        return witness_projections::reports::worker::main();
    }
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn connect(url: &str) -> Result<EventStore> {
    EventStore::connect(url).await.with_context(|| format!("opening the event store at {}", redact(url)))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    // `media loopback` writes to a store only when one is named.
    let named_store = cli.database_url.clone();
    let url = cli.database_url.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
    match cli.command {
        Command::Serve(args) => serve(&url, *args).await?,
        Command::Admin { command } => admin(&url, command).await?,
        Command::Verify { recordings: true, recordings_dir, .. } => {
            return verify_recordings(&url, &recordings_dir).await
        }
        Command::Verify { package: Some(package), public_key, .. } => return verify_package(&package, public_key),
        Command::Verify { public_key, .. } => return verify(&url, public_key).await,
        Command::Backup { out, key_file, token_key_file, recordings_dir, uploads_dir } => {
            let store = connect(&url).await?;
            let sources = witness_replay::backup::Sources { key_file, token_key_file, recordings_dir, uploads_dir };
            let bar = ProgressBar::new_spinner().with_message("backing up");
            let report =
                witness_replay::backup::backup(&store, &sources, &out, |name| bar.set_message(name.to_owned()))
                    .await
                    .with_context(|| format!("backing up to {}", out.display()))?;
            bar.finish_and_clear();
            println!("backed up {report}, to {}", out.display());
        }
        Command::Restore { file, data_dir } => {
            let bar = ProgressBar::new_spinner().with_message("restoring");
            let report = witness_replay::backup::restore(&file, &data_dir, |name| bar.set_message(name.to_owned()))
                .with_context(|| format!("restoring {} into {}", file.display(), data_dir.display()))?;
            bar.finish_and_clear();
            println!("restored {report}, into {}", data_dir.display());
            let db = data_dir.join("witness.db");
            println!("check it: witness --database-url sqlite://{} verify", db.display());
        }
        Command::Checkpoint { key_file } => {
            let store = connect(&url).await?;
            let signer = CheckpointSigner::load_or_create(&key_file)?;
            let made = signer.checkpoint(&store).await?;
            match made.last() {
                None => println!("nothing new to checkpoint"),
                Some(last) => println!("signed {} checkpoint(s), up to {}", made.len(), last.to),
            }
        }
        Command::Schema { command: SchemaCommand::Export { dir } } => schema_export(&dir)?,
        Command::Media { command: MediaCommand::Loopback { seconds, out, media_ports, segment_seconds } } => {
            return media_loopback(named_store.as_deref(), seconds, out, media_ports, segment_seconds).await
        }
        Command::Seed { sessions: Some(sessions), agents, seed, tenant, json, .. } => {
            seed_day(&url, sessions, agents, seed, &tenant, json).await?;
        }
        Command::Seed { sessions: None, events, streams, batch, tenant, .. } => {
            seed(&url, events.unwrap_or(10_000), streams, batch, &tenant).await?;
        }
        Command::Replay { command: ReplayCommand::List { limit, json } } => replay_list(&url, limit, json).await?,
        Command::Replay { command: ReplayCommand::Session { id, at, json } } => {
            let store = connect(&url).await?;
            let replay = witness_replay::replay::replay_session(&store, id, at).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&replay)?);
            } else {
                print!("{replay}");
            }
        }
        Command::Rebuild { projection } => rebuild(&url, projection.as_deref()).await?,
        // Dispatched in `main`, before this runtime starts.
        Command::ReportWorker => unreachable!("the report worker runs without the CLI's runtime"),
        Command::Export { audit: Some(ExportCommand::Audit { tenant, from, to, format, out, unmasked }), .. } => {
            let format = match format {
                AuditFormatArg::Parquet => AuditFormat::Parquet,
                AuditFormatArg::Jsonl => AuditFormat::Jsonl,
                AuditFormatArg::Csv => AuditFormat::Csv,
            };
            export_audit(&url, &out, AuditQuery { tenant, from, to, unmasked }, format).await?
        }
        Command::Export { audit: None, format: _, out, tenant } => {
            export(&url, &out.expect("clap requires --out"), tenant.as_ref()).await?
        }
        Command::Report { command } => report(command).await?,
        Command::Retention { command: RetentionCommand::Sweep { recordings_dir, uploads_dir, at, dry_run } } => {
            let store = connect(&url).await?;
            let projector = witness_projections::Projector::connect(&url, vec![]).await?;
            let uploads = witness_app::uploads::UploadStore::new(uploads_dir, 0);
            let now = at.unwrap_or_else(chrono::Utc::now);
            let report =
                witness_app::retention::sweep(&store, &projector, &recordings_dir, &uploads, now, dry_run).await?;
            for d in &report.deleted {
                let class = serde_json::to_value(d.class)?.as_str().unwrap_or_default().to_owned();
                println!(
                    "{} {} session {} {}",
                    if dry_run { "would delete" } else { "deleted" },
                    class,
                    d.session_id,
                    d.file
                );
            }
            println!(
                "{} file(s) {}; {} session(s) past retention kept by a legal hold; {} earlier deletion(s) {}",
                report.deleted.len(),
                if dry_run { "to delete (dry run: nothing deleted)" } else { "deleted" },
                report.held_sessions,
                report.retried,
                if dry_run { "to finish" } else { "finished" }
            );
            for id in &report.not_erasable {
                println!("session {id}: written before per-session keys; its messages cannot be erased");
            }
            if report.orphans > 0 {
                let verb = if dry_run { "would be removed" } else { "removed" };
                println!("{} upload(s) that no message ever named {verb}", report.orphans);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The face models from `dir`, or from the default place if none was
/// named: a named directory must load; the default may be missing.
fn load_face_models(dir: Option<PathBuf>) -> Result<Option<std::sync::Arc<witness_face::FaceModel>>> {
    let (dir, named) = match dir {
        Some(dir) => (dir, true),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")));
            match cache {
                Some(cache) => (cache.join("witness/face-models"), false),
                None => return Ok(None),
            }
        }
    };
    match witness_face::FaceModel::load(&dir) {
        Ok(model) => {
            tracing::info!(models = %dir.display(), version = model.version(), "face verification on");
            Ok(Some(std::sync::Arc::new(model)))
        }
        Err(e) if !named => {
            tracing::warn!(error = %e, "face verification off");
            Ok(None)
        }
        Err(e) => Err(e).context("--face-models"),
    }
}

async fn serve(url: &str, args: ServeArgs) -> Result<()> {
    let ServeArgs {
        listen,
        key_file,
        checkpoint_every,
        kafka,
        kafka_topic,
        token_key_file,
        uploads_dir,
        export_dir,
        max_upload_mib,
        media_ip,
        media_public_ip,
        media_private_candidates,
        media_ports,
        media_threads,
        ice_servers,
        turn_username,
        turn_credential,
        recordings_dir,
        record_calls,
        segment_seconds,
        retention_every,
        face_models,
        report_workers,
        report_memory_mib,
        report_timeout_secs,
        header_timeout_secs,
        body_timeout_secs,
        max_connections,
        max_connections_per_address,
        session_upload_files,
        tls_cert,
        tls_key,
        tls_self_signed,
        http_redirect_listen,
        trusted_proxies,
        ready_max_lag,
        metrics_token,
        metrics_listen,
        session_upload_mib,
        visitors_per_minute,
        logins_per_minute,
        login_failures,
    } = args;
    if record_calls {
        witness_media::recorder::init().context("--record-calls needs GStreamer (scripts/serve.sh installs it)")?;
    }
    let media = witness_media::server::MediaConfig {
        ip: media_ip,
        ports: media_ports,
        threads: media_threads.map_or_else(witness_media::server::default_media_threads, usize::from),
        public_ip: media_public_ip,
        ice_servers: ice_servers
            .into_iter()
            .map(|url| witness_media::server::IceServer {
                username: if url.starts_with("turn") { turn_username.clone() } else { String::new() },
                credential: if url.starts_with("turn") { turn_credential.clone() } else { String::new() },
                urls: vec![url],
            })
            .collect(),
        recordings_dir: recordings_dir.clone(),
        segment: Duration::from_secs(segment_seconds.max(1)),
        latency: None,
        candidates: witness_media::candidates::CandidatePolicy {
            loopback: false,
            private: media_private_candidates.unwrap_or_else(|| match media_public_ip.unwrap_or(media_ip) {
                std::net::IpAddr::V4(v4) => v4.is_private(),
                std::net::IpAddr::V6(v6) => v6.segments()[0] & 0xfe00 == 0xfc00,
            }),
        },
    };
    let keys = witness_api::auth::TokenKeys::load_or_create(&token_key_file)?;
    let uploads = witness_app::uploads::UploadStore::new(uploads_dir, max_upload_mib * 1024 * 1024)
        .with_session_quota(session_upload_files, session_upload_mib << 20);
    let store = connect(url).await?;
    let demo = witness_api::accounts::demo_start(&store).await?;
    let state = witness_api::AppState::new(store.clone(), url, keys, uploads).await?.with_media(media);
    let signer = std::sync::Arc::new(CheckpointSigner::load_or_create(&key_file)?);
    let face = load_face_models(face_models)?;
    let worker = witness_projections::reports::worker::Worker::new(
        std::env::current_exe().context("finding this program, to run report workers")?,
        &["report-worker"],
        report_workers.into(),
        report_memory_mib << 20,
    );
    let reports = witness_projections::reports::worker::Runner::Worker(std::sync::Arc::new(worker));
    let state = witness_api::AppState {
        record_calls,
        export_dir,
        reports,
        report_timeout: Duration::from_secs(report_timeout_secs),
        throttles: std::sync::Arc::new(witness_api::limits::Throttles::new(witness_api::limits::ThrottleConfig {
            visitors_per_minute,
            logins_per_minute,
            login_failures,
        })),
        package_signer: Some(signer.clone()),
        face,
        readiness: witness_api::Readiness { max_lag: ready_max_lag, relay: kafka.is_some() },
        metrics_token: metrics_token.filter(|t| !t.is_empty()),
        ..state
    };
    let tls = match (&tls_cert, &tls_key, &tls_self_signed) {
        (Some(cert), Some(key), _) => Some(witness_api::tls::Tls::from_files(cert, key)?),
        (_, _, Some(name)) => {
            let dir = key_file.parent().unwrap_or(std::path::Path::new("."));
            let (tls, prints) = witness_api::tls::Tls::self_signed(name, dir)?;
            println!("A self-signed certificate for {name} (in {}):", dir.display());
            println!("  SHA-256 fingerprint  {}", prints.certificate_sha256);
            println!("  public key (SPKI) SHA-256, base64  {}", prints.spki_sha256_base64);
            Some(tls)
        }
        _ => None,
    };
    if http_redirect_listen.is_some() && tls.is_none() {
        bail!("--http-redirect-listen sends browsers to HTTPS: give --tls-cert and --tls-key, or --tls-self-signed");
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
    let address = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(backend = store.backend_name(), "witness listening on {scheme}://{address}");
    if tls.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            "serving plain HTTP beyond this machine: browsers allow calls (camera, microphone) only over HTTPS; \
             use --tls-cert/--tls-key, --tls-self-signed, or a TLS proxy in front"
        );
    }
    if !demo.is_empty() {
        // Printed, not logged: these are for the person who just started it.
        println!("\nA fresh store: created the tenant `demo` with these logins (shown once):");
        for d in &demo {
            println!("  {:<11} login {:<11} password {}", format!("{:?}", d.role).to_lowercase(), d.login, d.password);
        }
        println!("Customer page: {scheme}://{address}/   Agent workbench: {scheme}://{address}/agent");
        println!("Supervisor dashboard: {scheme}://{address}/supervisor   Admin: {scheme}://{address}/admin\n");
    }
    let checkpoints = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(checkpoint_every.max(1)));
            loop {
                tick.tick().await;
                if let Err(e) = signer.checkpoint(&store).await {
                    tracing::warn!(error = %e, "checkpoint failed; retrying at the next tick");
                }
            }
        })
    };
    let retention = {
        let (store, uploads, projector) = (store.clone(), state.uploads.clone(), state.projector.clone());
        let metrics = state.metrics.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(retention_every.max(1)));
            loop {
                tick.tick().await;
                let now = chrono::Utc::now();
                match witness_app::retention::sweep(&store, &projector, &recordings_dir, &uploads, now, false).await {
                    Ok(r) => {
                        metrics.retention_sweeps.add(1);
                        metrics.retention_deleted.add(r.deleted.len() as u64);
                        if !(r.deleted.is_empty() && r.retried == 0 && r.not_erasable.is_empty() && r.orphans == 0) {
                            tracing::info!(
                                deleted = r.deleted.len(),
                                retried = r.retried,
                                not_erasable = r.not_erasable.len(),
                                orphans = r.orphans,
                                "retention sweep"
                            );
                        }
                    }
                    Err(e) => {
                        metrics.retention_failures.add(1);
                        tracing::warn!(error = %e, "retention sweep failed; retrying at the next tick");
                    }
                }
            }
        })
    };
    let projector = witness_projections::Projector::connect(url, witness_projections::models::all()).await?;
    let mut tasks = vec![checkpoints, retention];
    match kafka {
        None => {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                // A database that went away (restarted, failed over) comes
                // back: go on from the checkpoints then.
                while let Err(e) = projector.run(&store).await {
                    tracing::error!(error = %e, "projections stopped; starting again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
        }
        Some(brokers) => {
            // Distributed mode: this node relays the log to Kafka, and its
            // read models are fed from the topic as a consumer group.
            witness_engine::kafka::create_topic(&brokers, &kafka_topic).await?;
            let relay = witness_engine::kafka::OutboxRelay::new(store.clone(), &brokers, &kafka_topic)?;
            tasks.push(tokio::spawn(async move { relay.run().await }));
            let feed =
                witness_engine::kafka::KafkaFeed::new(store.clone(), &brokers, &kafka_topic, "witness-projections")?;
            tasks.push(tokio::spawn(async move {
                while let Err(e) = projector.run_kafka(&feed, |_| {}).await {
                    tracing::error!(error = %e, "projections stopped; starting again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
            tracing::info!(topic = %kafka_topic, "relaying to Kafka; projections read from the topic");
        }
    }
    tasks.push(tokio::spawn(witness_api::live::run(store.clone(), state.hub.clone(), Default::default())));
    let limits = witness_api::server::Limits {
        header_timeout: Duration::from_secs(header_timeout_secs),
        body_idle_timeout: Duration::from_secs(body_timeout_secs),
        max_connections: max_connections as usize,
        max_connections_per_address: max_connections_per_address as usize,
    };
    if let Some(tls) = &tls {
        tasks.push(tokio::spawn(tls.clone().watch(Duration::from_secs(5))));
    }
    if let Some(at) = metrics_listen {
        let router = axum::Router::new()
            .route("/metrics", axum::routing::get(witness_api::metrics::open))
            .with_state(state.clone());
        let front = witness_api::server::Front::default();
        tasks.push(side_listener(at, router, &limits, front, "serving /metrics without a token").await?);
    }
    if let Some(plain) = http_redirect_listen {
        let router = witness_api::server::redirect_to_https(address.port());
        let front = witness_api::server::Front { tls: None, trusted_proxies: trusted_proxies.clone() };
        tasks.push(side_listener(plain, router, &limits, front, "sending plain HTTP to HTTPS").await?);
    }
    let front = witness_api::server::Front { tls, trusted_proxies };
    witness_api::server::serve(listener, witness_api::app(state), limits, front, async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    })
    .await?;
    for task in tasks {
        task.abort();
    }
    Ok(())
}

/// Serves `router` on `at` beside the API, under the same limits, until
/// the process ends; `what` names it in the log.
async fn side_listener(
    at: SocketAddr,
    router: axum::Router,
    limits: &witness_api::server::Limits,
    front: witness_api::server::Front,
    what: &'static str,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(at).await.with_context(|| format!("binding {at}"))?;
    tracing::info!("{what} on {}", listener.local_addr()?);
    let limits = limits.clone();
    Ok(tokio::spawn(async move {
        if let Err(e) = witness_api::server::serve(listener, router, limits, front, std::future::pending()).await {
            tracing::error!(error = %e, "stopped {what}");
        }
    }))
}

async fn admin(url: &str, command: AdminCommand) -> Result<()> {
    if let AdminCommand::RotateTokenKey { token_key_file } = &command {
        let id = witness_api::auth::TokenKeys::rotate(token_key_file)?;
        println!("new token key {id} in {}: restart `witness serve` to sign with it", token_key_file.display());
        return Ok(());
    }
    let store = connect(url).await?;
    match command {
        AdminCommand::CreateTenant { tenant, name } => {
            witness_app::tenant::create_tenant(&store, &tenant, &name).await?;
            println!("created tenant {tenant}");
        }
        AdminCommand::CreateUser { tenant, login, role, display_name } => {
            let (password, generated) = match std::env::var("WITNESS_PASSWORD") {
                Ok(p) => (p, false),
                Err(_) => (witness_app::credentials::random_password(), true),
            };
            let name = display_name.unwrap_or_else(|| login.clone());
            let actor = Actor::new(ActorKind::Admin, "cli");
            let id = witness_app::tenant::create_user(&store, &tenant, &actor, &login, role, &name, &password).await?;
            println!("created user {login} ({id}) in {tenant}");
            if generated {
                println!("password: {password}");
            }
        }
        AdminCommand::Users { tenant } => {
            let dir = witness_app::tenant::directory(&store, &tenant).await?;
            if !dir.exists() {
                bail!("no tenant {tenant}");
            }
            for user in dir.users.values() {
                println!(
                    "{:<24} {:<11} {} ({})",
                    user.login,
                    format!("{:?}", user.role).to_lowercase(),
                    user.display_name,
                    user.user_id
                );
            }
        }
        AdminCommand::RotateTokenKey { .. } => unreachable!("handled before the store is opened"),
    }
    Ok(())
}

fn verify_package(package: &Path, public_key: Option<PathBuf>) -> Result<ExitCode> {
    let key_path = public_key.unwrap_or_else(|| public_key_path(Path::new("data/witness-signing.key")));
    let key = read_public_key(&key_path).with_context(|| {
        format!(
            "a package is checked against the instance's public key: pass --public-key (not found: {})",
            key_path.display()
        )
    })?;
    let file = std::fs::File::open(package).with_context(|| format!("opening {}", package.display()))?;
    let report = witness_replay::package::verify_package(std::io::BufReader::new(file), &key)?;
    println!(
        "session {}: {} files, {} events, {} recording files checked against the log",
        report.session_id, report.files, report.events, report.recordings
    );
    if report.is_ok() {
        println!("OK: the package is intact and signed by this key");
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &report.problems {
        println!("FAILED: {problem}");
    }
    Ok(ExitCode::from(1))
}

async fn verify(url: &str, public_key: Option<PathBuf>) -> Result<ExitCode> {
    let store = connect(url).await?;
    let default_pub = public_key_path(Path::new("data/witness-signing.key"));
    let key = match public_key {
        Some(path) => Some(read_public_key(&path)?),
        None if default_pub.exists() => Some(read_public_key(&default_pub)?),
        None => None,
    };
    let bar = spinner("verifying");
    let report = witness_replay::verify::verify_store(&store, key, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    println!(
        "{} events in {} streams; {} signed checkpoints{}; {} events after the last checkpoint",
        report.events,
        report.streams,
        report.checkpoints,
        if report.trusted_key {
            " (trusted key)"
        } else {
            " (no trusted public key given: checked with the stored key)"
        },
        report.unchecked_tail,
    );
    let Some(first) = report.first_problem() else {
        println!("OK: the log is intact");
        return Ok(ExitCode::SUCCESS);
    };
    for p in &report.problems {
        match p.position {
            Some(pos) => println!("  position {pos}: {}", p.message),
            None => println!("  {}", p.message),
        }
    }
    match first.position {
        Some(pos) => println!("FAILED: first bad position {pos}: {}", first.message),
        None => println!("FAILED: {}", first.message),
    }
    Ok(ExitCode::from(1))
}

async fn media_loopback(
    store_url: Option<&str>,
    seconds: u64,
    out: PathBuf,
    ports: (u16, u16),
    segment_seconds: u64,
) -> Result<ExitCode> {
    witness_media::recorder::init().context("the recorder needs GStreamer (scripts/serve.sh installs it)")?;
    let config = witness_media::server::MediaConfig {
        ports,
        recordings_dir: out.clone(),
        segment: Duration::from_secs(segment_seconds.max(1)),
        ..Default::default()
    };
    // With a store, the call is a session of the self-test tenant and
    // everything the media server reports goes into its record, as in a
    // served call; without one, nothing is written but the segment files.
    let selftest = match store_url {
        Some(url) => Some(SelftestCall::open(connect(url).await?).await?),
        None => None,
    };
    let (room, recording) = match &selftest {
        Some(call) => (call.session.to_string(), call.recording.to_string()),
        None => ("loopback".to_owned(), "loopback".to_owned()),
    };
    let (forward, recorder) = match &selftest {
        Some(call) => {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            (Some(tx), Some(tokio::spawn(witness_app::media::record(call.store.clone(), rx))))
        }
        None => (None, None),
    };
    let (server, reports) = witness_media::server::MediaServer::new(config);
    let bar = ProgressBar::new(seconds).with_message("calling through the SFU");
    bar.set_style(ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} s").expect("a valid template"));
    let call =
        witness_media::loopback::LoopbackCall { room, recording, duration: Duration::from_secs(seconds), forward };
    let report = witness_media::loopback::run(&server, reports, call, |s| bar.set_position(s)).await?;
    bar.finish_and_clear();
    println!("forwarded packets: {}", report.forwarded_packets);
    println!("keyframe requests relayed: {}", report.keyframe_requests_relayed);
    for (name, audio, video) in &report.received {
        println!("{name} received: {audio} audio packets, {video} video packets");
    }
    println!("segments under {}:", out.display());
    for (file, bytes, duration_ms) in &report.segments {
        let probed = witness_media::composite::duration_ms(&out.join(file))
            .map(|ms| format!("{ms} ms"))
            .unwrap_or_else(|| "unreadable".into());
        println!("  {file}  {bytes} bytes  {duration_ms} ms recorded, {probed} read back");
    }
    for failure in &report.failures {
        println!("recorder failed: {failure}");
    }
    let mut problems = Vec::new();
    if !report.received.iter().all(|(_, audio, video)| *audio > 0 && *video > 0) {
        problems.push("media did not flow both ways".to_owned());
    }
    if report.segments.is_empty() {
        problems.push("nothing was recorded".to_owned());
    }
    if !report.failures.is_empty() {
        problems.push("a recorder failed".to_owned());
    }
    if let (Some(call), Some(recorder)) = (selftest, recorder) {
        drop(server); // its last reports are in; the store's writer finishes
        recorder.await.context("the media report writer")?;
        problems.extend(call.finish(&out, &report.segments).await?);
    }
    if problems.is_empty() {
        println!("OK: media flows through the SFU and is recorded");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("FAILED: {}", problems.join("; "));
        Ok(ExitCode::from(1))
    }
}

/// The session `media loopback --database-url` calls in: tenant
/// `selftest`, taken by a made-up agent, in a recorded video call.
struct SelftestCall {
    store: EventStore,
    tenant: TenantId,
    session: SessionId,
    agent: UserId,
    call: CallId,
    recording: RecordingId,
}

impl SelftestCall {
    const TENANT: &'static str = "selftest";

    async fn open(store: EventStore) -> Result<SelftestCall> {
        use witness_domain::session::SessionCommand as C;
        let call = SelftestCall {
            store,
            tenant: Self::TENANT.parse()?,
            session: SessionId::new(),
            agent: UserId::new(),
            call: CallId::new(),
            recording: RecordingId::new(),
        };
        let (offer_id, now) = (OfferId::new(), chrono::Utc::now());
        let commands = [
            C::Start {
                session_id: call.session,
                channel: Channel::Api,
                business_type: "media-selftest".into(),
                customer_ref: "loopback".into(),
                locale: None,
            },
            C::RequestHuman {
                group: "selftest".into(),
                reason: "media self-test".into(),
                context_summary: "witness media loopback".into(),
                priority: 0,
            },
            // Assigned in one command: a server serving this store meanwhile
            // (a backup drill) withdrew an offer to this made-up agent
            // before it could be accepted.
            C::Assign { offer_id, agent_id: call.agent, at: now },
            C::StartCall { agent_id: call.agent, call_id: call.call, kind: CallKind::Video },
            C::StartRecording { recording_id: call.recording, reason: RecordingReason::OnDemand },
        ];
        for command in commands {
            call.run(command).await?;
        }
        println!("calling as session {} of tenant {}", call.session, call.tenant);
        Ok(call)
    }

    async fn run(&self, command: witness_domain::session::SessionCommand) -> Result<()> {
        witness_engine::executor::execute::<witness_domain::session::Session>(
            &self.store,
            &self.tenant,
            &StreamId::session(self.session),
            &Actor::system(),
            chrono::Utc::now(),
            command,
        )
        .await
        .context("writing the self-test session")?;
        Ok(())
    }

    /// Ends the recording, the call and the session, then checks that the
    /// record names every segment the recorder closed, with its size and
    /// the hash of the file as it is now. Returns what is wrong.
    async fn finish(self, dir: &Path, closed: &[(String, u64, u64)]) -> Result<Vec<String>> {
        use witness_domain::session::SessionCommand as C;
        self.run(C::StopRecording { recording_id: self.recording }).await?;
        self.run(C::EndCall { call_id: self.call, reason: Some("self-test done".into()) }).await?;
        self.run(C::End { ended_by: EndedBy::System, reason: EndReason::Resolved }).await?;
        let events = self.store.read_stream(&StreamId::session(self.session), 1).await?;
        let mut problems = Vec::new();
        let mut recorded = Vec::new();
        for event in &events {
            if let Ok(Event::RecordingSegmentClosed(s)) = event.decode() {
                let file = dir.join(&s.file);
                match witness_media::recorder::sha256_file(&file) {
                    Ok(hash) if hash == s.sha256.as_str() => {}
                    Ok(_) => problems.push(format!("{}: its hash differs from the record", s.file)),
                    Err(e) => problems.push(format!("{}: {e}", s.file)),
                }
                recorded.push((s.file, s.bytes));
            }
        }
        recorded.sort();
        let expected: Vec<_> = closed.iter().map(|(file, bytes, _)| (file.clone(), *bytes)).collect();
        if recorded != expected {
            problems.push(format!(
                "the record names {} segments, the recorder closed {}",
                recorded.len(),
                expected.len()
            ));
        }
        println!(
            "{} events written to session {} ({} segments named with their hashes)",
            events.len(),
            self.session,
            recorded.len()
        );
        Ok(problems)
    }
}

async fn verify_recordings(url: &str, dir: &Path) -> Result<ExitCode> {
    let store = connect(url).await?;
    let bar = spinner("hashing recording segments");
    let report = witness_replay::verify::verify_recordings(&store, dir, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    println!(
        "{} recording segments in the log; {} intact under {}, {} deleted under retention",
        report.segments,
        report.intact,
        dir.display(),
        report.deleted
    );
    if report.is_ok() {
        println!("OK: every recording segment is there, unaltered");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &report.problems {
        println!("  position {}: {}", p.position.unwrap_or_default(), p.message);
    }
    println!("FAILED: {} segment(s) missing or altered", report.problems.len());
    Ok(ExitCode::from(1))
}

fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(ProgressStyle::with_template("{spinner} {msg} {pos} events ({per_sec})").expect("template"));
    bar.set_message(what.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn schema_export(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let schemas = json_schemas();
    for (event_type, version, schema) in &schemas {
        let mut value = serde_json::to_value(schema)?;
        value["x-event-type"] = (*event_type).into();
        value["x-schema-version"] = (*version).into();
        let path = dir.join(format!("{event_type}.v{version}.schema.json"));
        std::fs::write(&path, serde_json::to_string_pretty(&value)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("wrote {} schemas to {}", schemas.len(), dir.display());
    Ok(())
}

/// Synthetic sessions: each stream opens with `SessionStarted`, then the
/// customer and the bot take turns. Appends go round-robin over the streams,
/// `batch` events at a time, with exact expected versions.
async fn seed(url: &str, events: u64, streams: u64, batch: usize, tenant: &str) -> Result<()> {
    if streams == 0 || !(1..=witness_engine::MAX_BATCH).contains(&batch) {
        bail!("--streams must be at least 1 and --batch from 1 to {}", witness_engine::MAX_BATCH);
    }
    let tenant: TenantId = tenant.parse()?;
    let store = connect(url).await?;
    let sessions: Vec<SessionId> = (0..streams).map(|_| SessionId::new()).collect();
    let mut versions = vec![0u64; streams as usize];
    let bar = ProgressBar::new(events);
    bar.set_style(ProgressStyle::with_template("seeding {bar:40} {pos}/{len} events ({per_sec}, eta {eta})")?);
    let started = std::time::Instant::now();
    let mut written = 0u64;
    let mut turn = 0usize;
    while written < events {
        let i = turn % sessions.len();
        turn += 1;
        let n = (batch as u64).min(events - written);
        let batch_events =
            (0..n).map(|k| NewEvent::new(synthetic_event(sessions[i], versions[i] + k), Actor::bot())).collect();
        let result = store
            .append(&tenant, &StreamId::session(sessions[i]), ExpectedVersion::Exact(versions[i]), batch_events)
            .await?;
        versions[i] = result.last_version();
        written += n;
        bar.set_position(written);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!("seeded {written} events in {streams} streams in {secs:.2} s ({:.0} events/s)", written as f64 / secs);
    Ok(())
}

fn synthetic_event(session_id: SessionId, version: u64) -> Event {
    let message_id = MessageId::new();
    match version {
        0 => SessionStarted {
            session_id,
            channel: Channel::ALL[(session_id.0.as_u128() % Channel::ALL.len() as u128) as usize],
            business_type: "general".into(),
            customer_ref: format!("visitor-{}", &session_id.to_string()[..8]),
            locale: None,
        }
        .into(),
        v if v % 2 == 1 => CustomerMessage {
            message_id,
            content: MessageContent::Text { text: format!("question {v}: how do I change my card limit?") },
        }
        .into(),
        v => BotMessage {
            message_id,
            content: MessageContent::Text { text: format!("answer {v}: open the app, Cards, Limits.") },
            faq_id: Some("faq-card-limit".into()),
            score: Some(0.87),
        }
        .into(),
    }
}

async fn rebuild(url: &str, name: Option<&str>) -> Result<()> {
    let store = connect(url).await?;
    let total = store.count().await?;
    let mut projector = witness_projections::Projector::connect(url, witness_projections::models::all()).await?;
    if let Some(name) = name {
        projector = projector.only(name)?;
    }
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("rebuilding {bar:40} {pos}/{len} events ({per_sec}, eta {eta})")?);
    let started = std::time::Instant::now();
    projector.reset().await?;
    let read = projector.catch_up(&store, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "rebuilt {} from {read} events in {secs:.2} s ({:.0} events/s)",
        projector.tables().join(", "),
        read as f64 / secs.max(1e-9)
    );
    Ok(())
}

async fn export(url: &str, out: &Path, tenant: Option<&TenantId>) -> Result<()> {
    use witness_projections::export;
    let store = connect(url).await?;
    // Positions are gap-free on SQLite, nearly so on PostgreSQL: the bar
    // starts where the last export stopped.
    let done = export::read_state(out)?.cursor.map_or(0, |c| c.position);
    let total = store.count().await?;
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template("exporting {bar:40} {pos}/{len} events ({per_sec}, eta {eta})")?);
    bar.set_position(done.min(total));
    let started = std::time::Instant::now();
    let report = export::export_events(&store, out, tenant, |n| bar.set_position((done + n).min(total))).await?;
    bar.finish_and_clear();
    // The read models as they are now, after catching up with the log.
    let projector = witness_projections::Projector::connect(url, witness_projections::models::all()).await?;
    projector.catch_up(&store, |_| {}).await?;
    let snapshots = export::export_read_models(&projector, out, tenant).await?;
    println!(
        "exported {} events into {} new file(s) and {} read-model snapshot(s) under {} in {:.2} s",
        report.events,
        report.files.len(),
        snapshots.len(),
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn export_audit(url: &str, out: &Path, query: AuditQuery, format: AuditFormat) -> Result<()> {
    let store = connect(url).await?;
    if let Some(tenant) = &query.tenant {
        if !witness_app::tenant::directory(&store, tenant).await?.exists() {
            bail!("no tenant {tenant}");
        }
    }
    let bar = ProgressBar::new(store.count().await?);
    bar.set_style(ProgressStyle::with_template("exporting {bar:40} {pos}/{len} events read ({per_sec}, eta {eta})")?);
    let pending =
        witness_projections::audit::export_audit(&store, out, &query, format, |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    if let Some(tenant) = &query.tenant {
        let actor = Actor::new(ActorKind::Admin, "cli");
        witness_app::audit::record_export(&store, tenant, &actor, &pending.manifest).await?;
    }
    let manifest = pending.publish()?;
    println!(
        "exported {} events ({}) into {} (sha256 {})",
        manifest.events,
        if manifest.unmasked { "unmasked" } else { "personal fields masked" },
        out.join(&manifest.file).display(),
        manifest.sha256
    );
    Ok(())
}

async fn report(command: ReportCommand) -> Result<()> {
    use witness_projections::reports::{self, Format, Reports, STANDARD};
    let (query, options) = match command {
        ReportCommand::List => {
            for r in STANDARD {
                println!("{:<20} {}", r.name, r.about);
            }
            return Ok(());
        }
        ReportCommand::Sql { query, options } => (Ok(query), options),
        ReportCommand::Run { name, options } => (Err(name), options),
    };
    if let Err(name) = &query {
        // Before opening anything: a typo should not cost a table load.
        if !STANDARD.iter().any(|r| r.name == name) {
            return Err(reports::ReportError::UnknownReport(name.clone()).into());
        }
    }
    let tables = Reports::open(&options.export, options.tenant.as_ref()).await?;
    let timeout = std::time::Duration::from_secs(options.timeout_secs);
    let answer = match &query {
        Ok(sql) => tables.sql(sql, options.limit, timeout).await?,
        Err(name) => tables.standard(name, options.utc_offset_minutes, options.limit, timeout).await?,
    };
    let format = match options.format {
        ReportFormat::Table => Format::Table,
        ReportFormat::Csv => Format::Csv,
        ReportFormat::Json => Format::Json,
        ReportFormat::Arrow => Format::Arrow,
    };
    let mut out = std::io::stdout().lock();
    reports::write(&answer, format, &mut out)?;
    if answer.truncated {
        eprintln!("(more rows matched; showing the first {}: raise --limit)", options.limit);
    }
    Ok(())
}

async fn seed_day(url: &str, sessions: usize, agents: usize, seed: u64, tenant: &str, json: bool) -> Result<()> {
    if sessions == 0 || agents == 0 {
        bail!("--sessions and --agents must be at least 1");
    }
    let tenant: TenantId = tenant.parse()?;
    let store = connect(url).await?;
    let bar = ProgressBar::new(sessions as u64);
    bar.set_style(ProgressStyle::with_template("seeding {bar:40} {pos}/{len} sessions ({per_sec}, eta {eta})")?);
    // The day is yesterday's working day, so timelines read like history.
    let start =
        (chrono::Utc::now() - chrono::Duration::days(1)).date_naive().and_hms_opt(1, 0, 0).expect("valid").and_utc();
    // The conversations in the tenant's language (Chinese for a tenant not set up yet).
    let known = witness_engine::executor::current::<witness_domain::tenant::Tenant>(&store, &StreamId::tenant(&tenant))
        .await?
        .state;
    let language = witness_workload::Language::of_locale(known.locale());
    let plan = witness_workload::DayPlan { tenant, sessions, agents, seed, start, language };
    let report = witness_workload::run_day(&store, &plan, |n| bar.set_position(n as u64)).await?;
    bar.finish_and_clear();
    if json {
        println!("{}", serde_json::to_string(&report)?);
        return Ok(());
    }
    println!(
        "seeded {} sessions ({} events): {} resolved by the bot, {} assigned to agents, {} abandoned, {} calls, \
         {} recording segments, {} ratings, {} tickets",
        report.sessions,
        report.events,
        report.bot_resolved,
        report.sessions_assigned,
        report.abandoned,
        report.calls,
        report.recording_segments,
        report.ratings,
        report.tickets
    );
    Ok(())
}

async fn replay_list(url: &str, limit: usize, json: bool) -> Result<()> {
    let store = connect(url).await?;
    let projector = witness_projections::Projector::connect(url, witness_projections::models::all()).await?;
    projector.catch_up(&store, |_| {}).await?;
    let sessions = projector.sessions(limit).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sessions)?);
        return Ok(());
    }
    println!(
        "{:<36}  {:<10}  {:<12}  {:<12}  {:<20}  {:<12}  rating",
        "session", "tenant", "channel", "business", "started", "outcome"
    );
    for s in &sessions {
        let dash = || "-".to_owned();
        println!(
            "{:<36}  {:<10}  {:<12}  {:<12}  {:<20}  {:<12}  {}",
            s.session_id,
            s.tenant_id,
            s.channel.clone().unwrap_or_else(dash),
            s.business_type.clone().unwrap_or_else(dash),
            s.started_at.as_deref().map(|t| t.get(..19).unwrap_or(t).replace('T', " ")).unwrap_or_else(dash),
            s.outcome.clone().unwrap_or_else(|| "open".into()),
            s.satisfaction.map(|r| r.to_string()).unwrap_or_else(dash),
        );
    }
    Ok(())
}
