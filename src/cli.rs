//! Command-line definitions (clap) only: what the user can type, nothing it does.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The default broker URL when neither --url nor DLQD_URL is given.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Debug, Parser)]
#[command(
    name = "dlqd",
    version,
    about = "A rules-driven dead-letter-queue handler for RabbitMQ",
    long_about = "dlqd reads a dead-letter queue, matches each message against a first-match \
rules table, and retries, forwards, discards or leaves it. The same engine dry-runs a rules \
table over captured messages."
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and validate rules files; print every error and warning (with --broker, also
    /// check the live broker's topology against each table).
    Check(CheckArgs),
    /// Apply a rules table to captured messages, without a broker.
    DryRun(DryRunArgs),
    /// Run the handler against a live broker.
    Run(RunArgs),
    /// Copy a queue's messages into a capture file without consuming them.
    Capture(CaptureArgs),
    /// Summarise a queue's messages (metadata only) without consuming them.
    Inspect(InspectArgs),
    /// Send captured messages to a queue, an exchange, or back where each died, with
    /// header edits; confirmed, audited, paced.
    Publish(PublishArgs),
    /// Print a shell completion script for dlqd to stdout.
    Completions(CompletionsArgs),
    /// Print dlqd's man page (roff) to stdout, or write every page into a directory.
    Man(ManArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Rules files to check; a directory stands for its `*.rules` files (and is checked
    /// as one `run --rules DIR`: each file names its DLQ, none twice).
    #[arg(required = true)]
    pub rules: Vec<PathBuf>,
    /// Fail (exit 1) on warnings too.
    #[arg(long)]
    pub deny_warnings: bool,
    /// Also check the live broker at URL (amqp:// or amqps://) against what each table
    /// assumes: the DLQ, the work queues' dead-lettering, forward targets, the user's
    /// permissions. Read through the management HTTP API.
    #[arg(long, value_name = "URL")]
    pub broker: Option<String>,
    /// The management API's address (http[s]://[USER:PASSWORD@]HOST:PORT); default: the
    /// broker's host on port 15672 (15671 for amqps://), with its credentials. Used only
    /// with --broker.
    #[arg(
        long,
        value_name = "URL",
        env = "DLQD_MANAGEMENT_URL",
        hide_env_values = true
    )]
    pub management: Option<String>,
    /// The DLQ to check against the broker (overrides INPUTQ).
    #[arg(long, requires = "broker")]
    pub queue: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct DryRunArgs {
    /// The rules file.
    #[arg(long)]
    pub rules: PathBuf,
    /// Capture files (JSON Lines); `-` reads stdin.
    #[arg(required = true)]
    pub captures: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Say, for each message, why every earlier rule did not apply.
    #[arg(long)]
    pub explain: bool,
}

/// Connection options shared by the commands that talk to a broker.
#[derive(Debug, Args, Clone)]
pub struct BrokerArgs {
    /// Broker URL (amqp:// or amqps://); repeat it (or separate URLs with commas in
    /// DLQD_URL) for the nodes of a cluster: dlqd connects to the first that answers and
    /// moves to the next when one goes away. For amqps://, env DLQD_TLS_CA_FILE names a
    /// PEM file of extra CAs to trust; DLQD_TLS_CERT_FILE and DLQD_TLS_KEY_FILE a client
    /// certificate and key.
    #[arg(long = "url", env = "DLQD_URL", value_delimiter = ',', default_value = DEFAULT_URL, hide_env_values = true, hide_default_value = true)]
    pub urls: Vec<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("table").required(true).args(["rules", "rule"])))]
pub struct RunArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The rules file (or use --rule). Repeat it, or name a directory (its `*.rules`
    /// files, sorted), to serve several DLQs: each file's INPUTQ names its DLQ.
    #[arg(long)]
    pub rules: Vec<PathBuf>,
    /// An inline rule, `PATTERNS ACTION(...)`; repeatable; forms the whole table.
    #[arg(long, conflicts_with = "rules")]
    pub rule: Vec<String>,
    /// The DLQ to consume (overrides INPUTQ); only with one rules table.
    #[arg(long)]
    pub queue: Option<String>,
    /// Stop when the DLQ holds nothing to act on now (same as WAIT(NO)).
    #[arg(long)]
    pub once: bool,
    /// Give up (exit status 1) when the broker or the DLQ has been unavailable this
    /// long: no connection, or the DLQ deleted. Default: 60s with --once, never without.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub connect_deadline: Option<std::time::Duration>,
    /// The type of the queues dlqd declares for delays and left messages: classic
    /// (one broker), or quorum (a cluster, with a quorum DLQ: they survive a node loss).
    /// Switching needs the old ones deleted (empty) first.
    #[arg(long, value_enum, default_value_t = crate::stage::StageKind::Classic)]
    pub stage_queues: crate::stage::StageKind,
    /// Unacknowledged messages in flight at most.
    #[arg(long, default_value_t = 500)]
    pub prefetch: u16,
    /// Serve Prometheus metrics at http://ADDR/metrics.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Append every action carried out to FILE, one JSON line each.
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// How fast and how many, for `run` (`publish` has its own --rate, --skip and --max).
#[derive(Debug, Args, Clone, Copy)]
pub struct LimitArgs {
    /// Take messages at most this fast: N/s or N/min (e.g. 200/s, 30/min).
    #[arg(long, value_name = "N/s|N/min")]
    pub rate: Option<crate::rate_limit::Rate>,
    /// Handle at most N messages, then stop cleanly (what is not handled stays where it
    /// is). `--once --max N` is a canary: N messages, then the summary.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("destination").required(true).args(["queue", "exchange", "to_origin"])))]
pub struct PublishArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// Capture files (JSON Lines, as `dlqd capture` writes them); `-` reads stdin.
    #[arg(required = true)]
    pub captures: Vec<PathBuf>,
    /// Send each message to this queue (through the default exchange).
    #[arg(long)]
    pub queue: Option<String>,
    /// Send each message to this exchange, with --routing-key or each message's own
    /// (the first routing key of its death history, else the one it was captured with).
    #[arg(long)]
    pub exchange: Option<String>,
    /// The routing key to use with --exchange.
    #[arg(long, requires = "exchange")]
    pub routing_key: Option<String>,
    /// Send each message back to the queue it died in (its death history); one with no
    /// death history is not sent (counted, reported, exit status 3).
    #[arg(long)]
    pub to_origin: bool,
    /// Set a header: NAME=VALUE (a string), or NAME:int=5, NAME:bool=true,
    /// NAME:float=1.5, NAME:str=text (a name with a ':' needs a type: a:b:str=v).
    /// Repeatable. The broker's headers (x-death, x-first-death-*, x-last-death-*,
    /// x-delivery-count, x-acquired-count) cannot be set. An edited copy carries
    /// x-dlqd-edited: set=NAMES;unset=NAMES.
    #[arg(long, value_name = "NAME=VALUE")]
    pub set_header: Vec<String>,
    /// Remove a header (the broker's too: --unset-header x-death). Repeatable.
    #[arg(long, value_name = "NAME")]
    pub unset_header: Vec<String>,
    /// Print where each message would go and which edits, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the marks of a past handling as captured (x-dlqd-retries, an earlier
    /// x-dlqd-edited, x-dlqd-rule, x-dlqd-action, x-delivery-count, x-acquired-count). By default a replay
    /// is a fresh attempt: they are removed.
    #[arg(long)]
    pub keep_marks: bool,
    /// Append every publish to FILE, one JSON line each (as `run --audit`, with the
    /// message's index in the captures).
    #[arg(long, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// Publish at most this fast: N/s or N/min (e.g. 200/s, 30/min).
    #[arg(long, value_name = "N/s|N/min")]
    pub rate: Option<crate::rate_limit::Rate>,
    /// Skip the first N messages of the captures (in order: N is the INDEX the dry run
    /// prints of the first one sent); to resume after a lost connection.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub skip: u64,
    /// Take at most N messages (after --skip), then stop: `--max 5` is a canary before
    /// the rest (`--skip 5`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max: Option<u64>,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The queue to copy.
    #[arg(long)]
    pub queue: String,
    /// Copy at most N messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Write here instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub broker: BrokerArgs,
    /// The queue to summarise; repeat it for a table with a row per queue.
    #[arg(long, required = true)]
    pub queue: Vec<String>,
    /// List each message's metadata too.
    #[arg(long)]
    pub messages: bool,
    /// Show bodies (with --messages).
    #[arg(long)]
    pub show_body: bool,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: e.g. `dlqd completions bash > /etc/bash_completion.d/dlqd`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// The subcommands that have a man page of their own (`dlqd man run` = dlqd-run(1)).
pub const MAN_PAGES: &[&str] = &[
    "check",
    "dry-run",
    "run",
    "capture",
    "inspect",
    "publish",
    "completions",
    "man",
];

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Print this subcommand's page (dlqd-COMMAND(1)) instead of dlqd(1).
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(MAN_PAGES))]
    pub command: Option<String>,
    /// Write dlqd.1 and one dlqd-COMMAND.1 per subcommand into DIR (for packaging).
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub out_dir: Option<PathBuf>,
}
