//! The command line as clap sees it, and one pure request-building function
//! per subcommand.
//!
//! Values are checked here, before anything is sent: a malformed incident id,
//! page id, action item id, severity, role, audience, source, status, label,
//! schedule, date or time is a usage error (exit 2) that names the flag. Everything else (empty titles, lifecycle
//! rules, limits) is the server's to judge.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand};
use klaxon_domain::ids::{Audience, IncidentId, IncidentRole, ReportSource, Severity};
use klaxon_domain::incident::Status;
use klaxon_proto::convert;
use klaxon_proto::v1;
use tonic::metadata::AsciiMetadataValue;

use crate::commands::{Action, Rpc, Tls};

#[cfg(test)]
mod tests;

/// The exit codes, shown at the end of `klaxon --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    the server refused the request (invalid argument, not found, failed
       precondition, permission denied, unauthenticated, resource exhausted,
       already exists)
  2    usage error (unknown command, missing or malformed argument)
  3    version conflict: --expect-version is stale (the current version is printed)
  4    server unreachable or unavailable (connection refused or closed, as
       when a server requiring client certificates refuses ours; unavailable,
       deadline exceeded; an address that is not gRPC, such as klaxond's
       HTTP port); check --server / KLAXON_SERVER
  5    any other error
  6    `klaxon policy lint` found problems (any finding with --strict), in the
       file or, without --config, in the server's running configuration
  130  `klaxon join` or `klaxon watch` interrupted by Ctrl-C

Times are shown in UTC.";

/// `klaxon`: command an incident from the terminal.
#[derive(Debug, Parser)]
#[command(
    name = "klaxon",
    version,
    about = "Klaxon incident command: report, declare, own, update and resolve Sev-1 incidents; explain their \
             severity, see who is on call, follow and acknowledge pages; watch the executive status feed; replay \
             timelines, write post-incident reviews, track action items and report trends.",
    after_help = EXIT_CODES_HELP
)]
pub struct Cli {
    /// Flags accepted by every subcommand.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags accepted by every subcommand (listed after a subcommand's own
/// options in its help, under their own heading).
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The address of klaxond's gRPC API; several (gateway or intake
    /// replicas) separated by commas are tried in order until one answers.
    #[arg(long, env = "KLAXON_SERVER", default_value = "http://127.0.0.1:7600", global = true, value_name = "URL", value_parser = parse_server)]
    pub server: String,
    /// Print one JSON object (per line, for `join` and `watch`) instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    /// The API token (from `klaxond token create`); the server records its
    /// principal as the actor. Prefer the variable: flags show in `ps`.
    #[arg(long, env = "KLAXON_TOKEN", hide_env_values = true, global = true, value_name = "TOKEN", value_parser = parse_token)]
    pub token: Option<AsciiMetadataValue>,
    /// A file holding the API token (used when --token and KLAXON_TOKEN are not set).
    #[arg(long, env = "KLAXON_TOKEN_FILE", global = true, value_name = "FILE", value_parser = read_token_file)]
    pub token_file: Option<AsciiMetadataValue>,
    /// The command's request id (also of `ack`, and the base of `join`'s note ids: ID.1, ID.2, …);
    /// a retry with the same id writes nothing twice [default: a fresh UUIDv4].
    #[arg(long, global = true, value_name = "ID")]
    pub request_id: Option<String>,
    /// Refuse the command unless the incident is still at this version (exit 3 otherwise).
    #[arg(long, global = true, value_name = "N")]
    pub expect_version: Option<u64>,
    /// A PEM file of the certificate authority to trust for an `https://` server
    /// [default: the system's roots are not used; https needs this].
    #[arg(long, env = "KLAXON_CA_CERT", global = true, value_name = "FILE")]
    pub ca_cert: Option<std::path::PathBuf>,
    /// A PEM file of the client certificate to present to an `https://` server
    /// that requires one (mutual TLS); needs --client-key.
    #[arg(long, env = "KLAXON_CLIENT_CERT", global = true, value_name = "FILE", requires = "client_key", value_parser = read_certificate)]
    pub client_cert: Option<Pem>,
    /// A PEM file of the private key of --client-cert.
    #[arg(long, env = "KLAXON_CLIENT_KEY", global = true, value_name = "FILE", requires = "client_cert", value_parser = read_private_key)]
    pub client_key: Option<Pem>,
}

/// The contents of a PEM file, read and checked while the command line is
/// parsed, so that an unreadable or malformed file is a usage error (exit 2)
/// naming its flag.
#[derive(Clone, PartialEq, Eq)]
pub struct Pem(pub Vec<u8>);

impl std::fmt::Debug for Pem {
    /// Never the contents: one of these files is a private key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pem({} bytes)", self.0.len())
    }
}

impl Global {
    /// The command context of this invocation: the given request id or a
    /// fresh UUIDv4, and the expected version if any. Call it once per
    /// invocation, so every RPC of it shares the id.
    pub fn context(&self) -> v1::CommandContext {
        v1::CommandContext {
            request_id: self.request_id.clone().unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            expected_version: self.expect_version,
        }
    }

    /// How to reach an `https://` server: the CA to trust and, when given,
    /// the client certificate to present.
    pub fn tls(&self) -> Tls {
        let identity = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => Some(tonic::transport::Identity::from_pem(&cert.0, &key.0)),
            // clap requires both or neither.
            _ => None,
        };
        Tls { ca_cert: self.ca_cert.clone(), identity }
    }

    /// The `authorization` header: `--token` or `KLAXON_TOKEN`, else the
    /// token file; none makes the server answer `UNAUTHENTICATED`.
    pub fn credentials(&self) -> Option<AsciiMetadataValue> {
        self.token.clone().or_else(|| self.token_file.clone())
    }
}

/// Every subcommand: one per RPC of `klaxon.v1` (services `Incidents`,
/// `Bridge`, `SeverityEvaluator`, `Paging`, `StatusFeed` and `Review`).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report an issue; prints the incident id (a report with the dedup key of an open incident is merged into it).
    Report(ReportArgs),
    /// Declare a reported issue an incident with a severity.
    Declare(DeclareArgs),
    /// Override the severity, or explain how the rules assess it.
    #[command(subcommand)]
    Severity(SeverityCommand),
    /// Make someone the incident commander.
    Assign(AssignArgs),
    /// Hand the incident over to another manager, who must accept.
    #[command(subcommand)]
    Handoff(HandoffCommand),
    /// Assign a role other than commander (`--replaces` a holder), or take it away (`--remove`).
    Role(RoleArgs),
    /// Post a status update to an audience.
    Update(UpdateArgs),
    /// Record the customer impact as currently known.
    Impact(ImpactArgs),
    /// Mark the incident mitigated.
    Mitigate(SummaryArgs),
    /// Mark the incident resolved.
    Resolve(SummaryArgs),
    /// Reopen a resolved or closed incident.
    Reopen(ReasonArgs),
    /// Validate the resolution, closing the incident.
    Validate(NoteArgs),
    /// Show one incident.
    Show(IncidentArg),
    /// List incidents, newest first.
    List(ListArgs),
    /// The open incidents by what needs attention first: unowned Sev-1s, the soonest SLO deadline, severity.
    Queue(QueueArgs),
    /// Show every event of one incident, in log order.
    History(IncidentArg),
    /// Join the incident bridge: print the live stream, send each stdin line as a note; EOF leaves (a server that stops ends it: exit 4).
    Join(JoinArgs),
    /// List the pages sent for one incident, oldest first.
    Pages(IncidentArg),
    /// Acknowledge a page (only the paged responder or a manager); stops its escalation.
    Ack(PageArg),
    /// Show who is on call (with overrides and swaps applied); change schedules: overrides, swaps; list holes.
    Oncall(OncallArgs),
    /// Mark a report as noise: trend reports leave it out.
    Noise(ReasonArgs),
    /// Pull someone into an open incident: a person directly, a schedule's on-call, or a team through its policy.
    Page(PageResponderArgs),
    /// Follow the executive status feed: the open incidents first (marked `*`), then every change, until Ctrl-C (reconnecting when cut).
    Watch(WatchArgs),
    /// Replay every event of an incident (incident, page and review events), optionally only up to a past moment.
    Timeline(TimelineArgs),
    /// Show an incident's metrics: times to detect, acknowledge, assign, mitigate and resolve; escalations, pages.
    Metrics(IncidentArg),
    /// Show, write, publish or export the post-incident review.
    #[command(subcommand)]
    Review(ReviewCommand),
    /// List the action items of every review.
    Actions(ActionsArgs),
    /// Report counts, percentiles and SLO compliance over a time range, as rendered by the server.
    Trends(TrendsArgs),
    /// Dry-run a configuration change: replay history under it (`test`), or lint it (`lint`).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit trail (managers): who did what, when, across every stream (incidents, pages, notifications, reviews, schedules, configuration, tokens).
    Audit(AuditArgs),
}

/// `klaxon policy ...`.
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Replay the recorded reports and responses of a window under a candidate configuration and show what would
    /// have been different (severities with rule ids, pages, escalations, SLO breaches); writes nothing. Managers only.
    Test(PolicyTestArgs),
    /// Lint a configuration file locally (--config), or without --config the configuration the server runs, with
    /// the schedules' overrides and swaps applied (managers only): shadowed rules, unreachable escalation levels,
    /// schedule coverage holes, severities that page nobody, unused channels, settings that never apply. Exit 6 on
    /// problems.
    Lint(PolicyLintArgs),
}

/// A configuration file, read while the command line is parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFile {
    /// Where it was read from.
    pub path: String,
    /// Its text.
    pub text: String,
}

/// How `klaxon policy test` prints its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A summary, then each incident (the default).
    Table,
    /// One JSON object: `summary`, then `incidents`.
    Json,
    /// One row per incident, with a header.
    Csv,
}

/// `klaxon policy test`.
#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// The candidate configuration file (klaxond's TOML; its policy sections are used).
    #[arg(long, value_name = "FILE", value_parser = read_config)]
    pub config: ConfigFile,
    /// Replay incidents first reported at or after this: YYYY-MM-DD (midnight UTC) or an RFC 3339 time
    /// [default: the beginning].
    #[arg(long, value_name = "TIME", value_parser = parse_day_or_time)]
    pub from: Option<prost_types::Timestamp>,
    /// ... and before this; later events are not replayed [default: now].
    #[arg(long, value_name = "TIME", value_parser = parse_day_or_time)]
    pub until: Option<prost_types::Timestamp>,
    /// table, json or csv (--json means json).
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
}

/// `klaxon policy lint`.
#[derive(Debug, Args)]
pub struct PolicyLintArgs {
    /// The configuration file to lint, locally. Without it the server's running configuration is linted (with
    /// the overrides and swaps of its schedules in force), by `SeverityEvaluator.LintPolicy`.
    #[arg(long, value_name = "FILE", value_parser = read_config)]
    pub config: Option<ConfigFile>,
    /// How many days ahead to look for schedule coverage holes (from now: the server's now without --config).
    #[arg(long, value_name = "N", default_value_t = 14, value_parser = clap::value_parser!(u32).range(1..=366))]
    pub days: u32,
    /// Exit 6 on any finding; without it only shadowed rules and severities that page nobody (always mistakes)
    /// fail, while coverage holes, unused policies, unused channels and settings that never apply (sometimes
    /// intended) are printed.
    #[arg(long)]
    pub strict: bool,
}

/// `klaxon review ...`.
#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Show the review of an incident.
    Show(IncidentArg),
    /// Write (replace) the review's summary.
    Summary(ReviewTextArgs),
    /// Write (replace) the review's impact statement.
    Impact(ReviewTextArgs),
    /// Add a contributing factor.
    Factor(ReviewTextArgs),
    /// Add, assign, schedule or complete action items.
    #[command(subcommand)]
    Action(ActionCommand),
    /// Publish the review.
    Publish(IncidentArg),
    /// Print the postmortem as Markdown, exactly as the server renders it (e.g. `> inc-7.md`).
    Export(IncidentArg),
}

/// `klaxon review action ...`.
#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Add an action item, with --owner and --due at once if known; prints its id (e.g. INC-7-A1).
    Add(ActionAddArgs),
    /// Give an action item an owner.
    Assign(ActionAssignArgs),
    /// Set an action item's due date.
    Due(ActionDueArgs),
    /// Mark an action item done.
    Done(ActionItemArg),
}

/// `klaxon severity ...`.
#[derive(Debug, Subcommand)]
pub enum SeverityCommand {
    /// Set the severity; the severity evaluator never changes it back.
    Set(SeveritySetArgs),
    /// Explain which rule gives the incident its assessed severity, and why the others do not match; or, with
    /// --report, how a hypothetical report would be rated (nothing is written).
    Explain(ExplainArgs),
}

/// `klaxon severity explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id, required_unless_present = "report", conflicts_with = "report")]
    pub incident: Option<String>,
    /// A JSON file of a hypothetical report: {"title", "description", "service", "customers": [..],
    /// "labels": {..}, "source": "alertmanager"}; only "title" is required.
    #[arg(long, value_name = "FILE.json", value_parser = read_report)]
    pub report: Option<v1::HypotheticalReport>,
}

/// `klaxon handoff ...`.
#[derive(Debug, Subcommand)]
pub enum HandoffCommand {
    /// Ask another manager to take the incident over (you stay commander until they accept).
    Request(HandoffRequestArgs),
    /// Accept a handoff addressed to you; only now does the commander change.
    Accept(IncidentArg),
    /// Decline a handoff addressed to you; the commander keeps the incident.
    Decline(ReasonArgs),
    /// Withdraw a pending handoff.
    Cancel(ReasonArgs),
}

/// Just an incident.
#[derive(Debug, Args)]
pub struct IncidentArg {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
}

/// Just a page.
#[derive(Debug, Args)]
pub struct PageArg {
    /// The page, e.g. INC-42-P1 (the first page of INC-42).
    #[arg(value_parser = parse_page_id)]
    pub page: String,
}

/// Just an action item.
#[derive(Debug, Args)]
pub struct ActionItemArg {
    /// The action item, e.g. INC-42-A1 (the first action item of INC-42's review).
    #[arg(value_parser = parse_action_item_id)]
    pub item: String,
}

/// `klaxon report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A one-line title.
    #[arg(long)]
    pub title: String,
    /// What is going on, in more words.
    #[arg(long)]
    pub description: Option<String>,
    /// The affected service.
    #[arg(long)]
    pub service: Option<String>,
    /// An affected customer (repeatable).
    #[arg(long = "customer", value_name = "CUSTOMER")]
    pub customers: Vec<String>,
    /// A label KEY=VALUE (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Reports with the dedup key of an open incident are merged into it.
    #[arg(long)]
    pub dedup_key: Option<String>,
    /// Where the report comes from: manual, api, help_desk (principals the server lists) or executive
    /// (executives) [default: the one your token earns: executive for an executive, manual for a person,
    /// api for a service].
    #[arg(long, value_parser = parse_source)]
    pub source: Option<v1::ReportSource>,
    /// When the problem itself started (RFC 3339, e.g. 2025-03-01T10:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_time)]
    pub started_at: Option<prost_types::Timestamp>,
}

/// `klaxon declare`.
#[derive(Debug, Args)]
pub struct DeclareArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The severity: 1 to 4 (also sev1, SEV-1).
    #[arg(long, value_parser = parse_severity)]
    pub severity: v1::Severity,
}

/// `klaxon severity set`.
#[derive(Debug, Args)]
pub struct SeveritySetArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The severity: 1 to 4 (also sev1, SEV-1).
    #[arg(value_parser = parse_severity)]
    pub severity: v1::Severity,
    /// Why the severity is overridden (kept for the audit).
    #[arg(long)]
    pub reason: String,
}

/// `klaxon assign`.
#[derive(Debug, Args)]
pub struct AssignArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The new incident commander.
    pub commander: String,
}

/// `klaxon handoff request`.
#[derive(Debug, Args)]
pub struct HandoffRequestArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The manager who should take the incident over.
    #[arg(long)]
    pub to: String,
}

/// `klaxon role`.
#[derive(Debug, Args)]
pub struct RoleArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The role: communications_lead, scribe or subject_matter_expert (commander: use `assign`).
    #[arg(value_parser = parse_role)]
    pub role: v1::IncidentRole,
    /// Who takes the role (with `--remove`: who gives it up).
    pub person: String,
    /// A holder of the role whom PERSON replaces.
    #[arg(long, conflicts_with = "remove")]
    pub replaces: Option<String>,
    /// Take the role from PERSON instead of giving it.
    #[arg(long)]
    pub remove: bool,
}

/// `klaxon page`: exactly one of `--person`, `--schedule`, `--team`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["person", "schedule", "team"])))]
pub struct PageResponderArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// Page this person directly.
    #[arg(long)]
    pub person: Option<String>,
    /// Page whoever is on call in this schedule.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Page this team through its escalation policy.
    #[arg(long)]
    pub team: Option<String>,
    /// Why they are needed (sent with the page).
    #[arg(long)]
    pub reason: String,
}

/// `klaxon update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The update's text.
    pub text: String,
    /// Who it is for: internal, executive, company_wide or customer (shown
    /// on the public status page).
    #[arg(long, default_value = "internal", value_parser = parse_audience)]
    pub audience: v1::Audience,
}

/// `klaxon impact`.
#[derive(Debug, Args)]
pub struct ImpactArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// How many customers are affected.
    #[arg(long, value_name = "N")]
    pub customers_affected: u32,
    /// An affected customer (repeatable).
    #[arg(long = "customer", value_name = "CUSTOMER")]
    pub customers: Vec<String>,
    /// Several customers are affected: updates also go company-wide.
    #[arg(long)]
    pub multi_customer: bool,
    /// The impact in one sentence.
    #[arg(long)]
    pub summary: String,
}

/// `klaxon mitigate` and `klaxon resolve`.
#[derive(Debug, Args)]
pub struct SummaryArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// What was done.
    #[arg(long)]
    pub summary: String,
}

/// `klaxon reopen`, `klaxon handoff decline` and `klaxon handoff cancel`.
#[derive(Debug, Args)]
pub struct ReasonArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// Why.
    #[arg(long)]
    pub reason: String,
}

/// `klaxon validate`.
#[derive(Debug, Args)]
pub struct NoteArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// How the resolution was validated.
    #[arg(long)]
    pub note: String,
}

/// `klaxon list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only this status: reported, declared, mitigated, resolved or closed (repeatable).
    #[arg(long = "status", value_name = "STATUS", value_parser = parse_status)]
    pub statuses: Vec<v1::IncidentStatus>,
    /// Only this severity, 1 to 4 (repeatable).
    #[arg(long = "severity", value_name = "N", value_parser = parse_severity)]
    pub severities: Vec<v1::Severity>,
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// At most this many per page (server default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
    /// Fetch every page, not just the first.
    #[arg(long)]
    pub all_pages: bool,
}

/// `klaxon queue`.
#[derive(Debug, Args)]
pub struct QueueArgs {
    /// Only this service.
    #[arg(long)]
    pub service: Option<String>,
    /// At most this many (server default 50).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=500))]
    pub limit: Option<u32>,
}

/// `klaxon join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The role you join in: commander, communications_lead, scribe or subject_matter_expert.
    #[arg(long, value_parser = parse_role)]
    pub role: Option<v1::IncidentRole>,
}

/// `klaxon oncall`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct OncallArgs {
    /// Change a schedule or list its holes [default: show who is on call].
    #[command(subcommand)]
    pub command: Option<OncallCommand>,
    /// Who is on call (without a subcommand).
    #[command(flatten)]
    pub who: WhoArgs,
}

/// `klaxon oncall who` (and `klaxon oncall` without a subcommand).
#[derive(Debug, Args)]
pub struct WhoArgs {
    /// The schedule's name [default: every schedule].
    #[arg(value_parser = parse_schedule)]
    pub schedule: Option<String>,
    /// The instant to ask about: an RFC 3339 time (e.g. 2025-03-01T10:00:00Z) or `now`.
    #[arg(long, value_name = "TIME", default_value = "now", value_parser = parse_at)]
    pub at: At,
}

/// The subcommands of `klaxon oncall`.
#[derive(Debug, Subcommand)]
pub enum OncallCommand {
    /// Show who is on call, on one schedule or all of them, now or at a given time.
    Who(WhoArgs),
    /// Put someone on call during [--from, --until) (`override remove` takes one back).
    #[command(subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
    Override(OverrideArgs),
    /// Swap a shift: request it, take it, cancel the request, or undo a taken swap before it starts.
    #[command(subcommand)]
    Swap(SwapCommand),
    /// List the holes (nobody on call) of every schedule in [--from, --to), changes applied.
    Coverage(CoverageArgs),
}

/// `klaxon oncall override`.
#[derive(Debug, Args)]
pub struct OverrideArgs {
    /// Remove an override instead.
    #[command(subcommand)]
    pub remove: Option<OverrideCommand>,
    /// The schedule's name.
    #[arg(long, required = true, value_parser = parse_schedule)]
    pub schedule: Option<String>,
    /// Who is on call during the override.
    #[arg(long, required = true, value_name = "PERSON")]
    pub who: Option<String>,
    /// Its first instant, RFC 3339.
    #[arg(long, required = true, value_name = "TIME", value_parser = parse_time)]
    pub from: Option<prost_types::Timestamp>,
    /// The first instant after it, RFC 3339.
    #[arg(long, required = true, value_name = "TIME", value_parser = parse_time)]
    pub until: Option<prost_types::Timestamp>,
}

/// `klaxon oncall override remove`.
#[derive(Debug, Subcommand)]
pub enum OverrideCommand {
    /// Take an override back.
    Remove(NumberArgs),
}

/// A schedule and the number of one of its overrides (`O3` or `3`) or swaps (`S2` or `2`).
#[derive(Debug, Args)]
pub struct NumberArgs {
    /// The schedule's name.
    #[arg(long, value_parser = parse_schedule)]
    pub schedule: String,
    /// The override's or swap's number, as shown when it was made.
    #[arg(value_parser = parse_number)]
    pub number: u32,
}

/// `klaxon oncall swap`.
#[derive(Debug, Subcommand)]
pub enum SwapCommand {
    /// Ask someone to take your shift [--from, --until) (a manager may ask for --for someone).
    Request(SwapRequestArgs),
    /// Take a requested swap: you are on call for its shift (a manager may take it --for someone).
    Take(SwapTakeArgs),
    /// Cancel your swap request, until someone takes it.
    Cancel(NumberArgs),
    /// Undo a taken swap, while its shift has not started.
    Undo(NumberArgs),
}

/// `klaxon oncall swap request`.
#[derive(Debug, Args)]
pub struct SwapRequestArgs {
    /// The schedule's name.
    #[arg(long, value_parser = parse_schedule)]
    pub schedule: String,
    /// The shift's first instant, RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: prost_types::Timestamp,
    /// The first instant after the shift, RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub until: prost_types::Timestamp,
    /// Whose shift it is [default: yours].
    #[arg(long = "for", value_name = "PERSON")]
    pub requester: Option<String>,
}

/// `klaxon oncall swap take`.
#[derive(Debug, Args)]
pub struct SwapTakeArgs {
    /// The schedule and the swap's number.
    #[command(flatten)]
    pub swap: NumberArgs,
    /// Who takes it [default: you].
    #[arg(long = "for", value_name = "PERSON")]
    pub taker: Option<String>,
}

/// `klaxon oncall coverage`.
#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// The first instant, RFC 3339.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub from: prost_types::Timestamp,
    /// The first instant after the range, RFC 3339 (at most 92 days after --from).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub to: prost_types::Timestamp,
}

/// `klaxon watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only incidents at least this severe, 1 to 4 [default: all, also those without a severity yet].
    #[arg(long, value_name = "N", value_parser = parse_severity)]
    pub min_severity: Option<v1::Severity>,
    /// Only this service (repeatable).
    #[arg(long = "service", value_name = "SERVICE")]
    pub services: Vec<String>,
    /// Only incidents listing this customer (repeatable).
    #[arg(long = "customer", value_name = "CUSTOMER")]
    pub customers: Vec<String>,
    /// Also the company-wide posts of multi-customer incidents.
    #[arg(long)]
    pub company_wide: bool,
}

/// `klaxon timeline`.
#[derive(Debug, Args)]
pub struct TimelineArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// Only what was known at this time (RFC 3339, e.g. 2025-03-01T10:00:00Z), and the incident's state then.
    #[arg(long, value_name = "TIME", value_parser = parse_time, conflicts_with = "as_of_position")]
    pub as_of: Option<prost_types::Timestamp>,
    /// Only the events up to this log position, and the incident's state then.
    #[arg(long, value_name = "N")]
    pub as_of_position: Option<u64>,
}

/// `klaxon review summary`, `impact` and `factor`.
#[derive(Debug, Args)]
pub struct ReviewTextArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// The text.
    pub text: String,
}

/// `klaxon review action add`.
#[derive(Debug, Args)]
pub struct ActionAddArgs {
    /// The incident, e.g. INC-42.
    #[arg(value_parser = parse_incident_id)]
    pub incident: String,
    /// What is to be done.
    pub title: String,
    /// Who owns it (a person the server knows); the item is added and
    /// assigned together, or not at all.
    #[arg(long)]
    pub owner: Option<String>,
    /// When it is due, YYYY-MM-DD.
    #[arg(long, value_parser = parse_date)]
    pub due: Option<String>,
}

/// `klaxon review action assign`.
#[derive(Debug, Args)]
pub struct ActionAssignArgs {
    /// The action item, e.g. INC-42-A1.
    #[arg(value_parser = parse_action_item_id)]
    pub item: String,
    /// Who owns it.
    pub owner: String,
}

/// `klaxon review action due`.
#[derive(Debug, Args)]
pub struct ActionDueArgs {
    /// The action item, e.g. INC-42-A1.
    #[arg(value_parser = parse_action_item_id)]
    pub item: String,
    /// The due date, YYYY-MM-DD.
    #[arg(value_parser = parse_date)]
    pub due: String,
}

/// `klaxon actions`.
#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// Only the items not done yet.
    #[arg(long)]
    pub open: bool,
}

/// `klaxon trends`.
#[derive(Debug, Args)]
pub struct TrendsArgs {
    /// The start: YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
    #[arg(long, value_name = "TIME", value_parser = parse_day_or_time)]
    pub from: prost_types::Timestamp,
    /// The end, excluded: YYYY-MM-DD (midnight UTC) or an RFC 3339 time.
    #[arg(long, visible_alias = "until", value_name = "TIME", value_parser = parse_day_or_time)]
    pub to: prost_types::Timestamp,
    /// Only incidents of this service.
    #[arg(long)]
    pub service: Option<String>,
    /// Only incidents filed under this team (the team the catalog gave their
    /// service when they were reported or declared).
    #[arg(long)]
    pub team: Option<String>,
    /// Only incidents of this current severity, 1 to 4 (also sev1, SEV-1).
    #[arg(long, value_name = "N", value_parser = parse_severity)]
    pub severity: Option<v1::Severity>,
    /// Print the report as CSV (the default is the table, --json prints JSON; --csv wins over --json).
    #[arg(long)]
    pub csv: bool,
}

/// `klaxon audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only what this principal (or service actor) did.
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// From: YYYY-MM-DD (midnight UTC) or an RFC 3339 time (included).
    #[arg(long, value_name = "TIME", value_parser = parse_day_or_time)]
    pub from: Option<prost_types::Timestamp>,
    /// Until: YYYY-MM-DD (midnight UTC) or an RFC 3339 time (excluded).
    #[arg(long, value_name = "TIME", value_parser = parse_day_or_time)]
    pub until: Option<prost_types::Timestamp>,
    /// Only kinds starting with this, such as `incident.`, `config.` or `token.`.
    #[arg(long, value_name = "PREFIX")]
    pub kind: Option<String>,
    /// table (the default), json (also --json) or csv.
    #[arg(long, value_enum)]
    pub format: Option<AuditFormat>,
}

/// How `klaxon audit` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuditFormat {
    /// Aligned columns: time, actor, kind, stream, summary.
    Table,
    /// One JSON array of entries.
    Json,
    /// CSV with a header row.
    Csv,
}

/// The instant of `klaxon oncall --at`.
#[derive(Debug, Clone, PartialEq)]
pub enum At {
    /// The server's current time (sent as no timestamp at all).
    Now,
    /// A given instant.
    Time(prost_types::Timestamp),
}

impl Command {
    /// What this invocation asks of the server: exactly one request, built by
    /// the subcommand's own function below.
    pub fn action(self, context: v1::CommandContext) -> Action {
        let rpc = match self {
            Command::Report(a) => Rpc::Report(report(a, context)),
            Command::Declare(a) => Rpc::Declare(declare(a, context)),
            Command::Severity(SeverityCommand::Set(a)) => Rpc::OverrideSeverity(override_severity(a, context)),
            Command::Severity(SeverityCommand::Explain(a)) => Rpc::ExplainSeverity(explain_severity(a)),
            Command::Policy(PolicyCommand::Test(a)) => Rpc::TestPolicy { format: a.format, request: test_policy(a) },
            Command::Policy(PolicyCommand::Lint(a)) => {
                return Action::Lint { config: a.config, days: a.days, strict: a.strict };
            }
            Command::Assign(a) => Rpc::AssignCommander(assign_commander(a, context)),
            Command::Handoff(HandoffCommand::Request(a)) => Rpc::RequestHandoff(request_handoff(a, context)),
            Command::Handoff(HandoffCommand::Accept(a)) => Rpc::AcceptHandoff(accept_handoff(a, context)),
            Command::Handoff(HandoffCommand::Decline(a)) => Rpc::DeclineHandoff(decline_handoff(a, context)),
            Command::Handoff(HandoffCommand::Cancel(a)) => Rpc::CancelHandoff(cancel_handoff(a, context)),
            Command::Role(a) if a.remove => Rpc::RemoveRole(remove_role(a, context)),
            Command::Role(a) => Rpc::AssignRole(assign_role(a, context)),
            Command::Update(a) => Rpc::PostUpdate(post_update(a, context)),
            Command::Impact(a) => Rpc::RecordCustomerImpact(record_customer_impact(a, context)),
            Command::Mitigate(a) => Rpc::Mitigate(mitigate(a, context)),
            Command::Resolve(a) => Rpc::Resolve(resolve(a, context)),
            Command::Reopen(a) => Rpc::Reopen(reopen(a, context)),
            Command::Validate(a) => Rpc::ValidateResolution(validate_resolution(a, context)),
            Command::Show(a) => Rpc::GetIncident(v1::GetIncidentRequest { incident_id: a.incident }),
            Command::List(a) => Rpc::ListIncidents { all_pages: a.all_pages, request: list_incidents(a) },
            Command::Queue(a) => Rpc::ListIncidents { all_pages: false, request: queue(a) },
            Command::History(a) => Rpc::GetHistory(v1::GetHistoryRequest { incident_id: a.incident }),
            Command::Join(a) => return Action::Join { join: join(a), note_ids: context.request_id },
            Command::Pages(a) => Rpc::ListPages(list_pages(a)),
            Command::Ack(a) => Rpc::Acknowledge(acknowledge(a, context)),
            Command::Oncall(a) => oncall(a, context),
            Command::Noise(a) => Rpc::MarkNoise(mark_noise(a, context)),
            Command::Page(a) => Rpc::PageResponder(page_responder(a, context)),
            Command::Watch(a) => return Action::Watch(feed_filter(a)),
            Command::Timeline(a) => Rpc::ReplayTimeline(replay_timeline(a)),
            Command::Metrics(a) => Rpc::GetMetrics(v1::GetMetricsRequest { incident_id: a.incident }),
            Command::Review(c) => review(c, context),
            Command::Actions(a) => Rpc::ListActionItems(v1::ListActionItemsRequest { open_only: a.open }),
            Command::Trends(a) => Rpc::Trends { csv: a.csv, request: trends(a) },
            Command::Audit(a) => Rpc::Audit { format: a.format, request: audit(a) },
        };
        Action::Call(rpc)
    }
}

fn report(a: ReportArgs, context: v1::CommandContext) -> v1::ReportRequest {
    v1::ReportRequest {
        context: Some(context),
        source: a.source.unwrap_or(v1::ReportSource::Unspecified) as i32,
        title: a.title,
        description: a.description.unwrap_or_default(),
        service: a.service.unwrap_or_default(),
        customers: a.customers,
        labels: a.labels.into_iter().collect::<HashMap<_, _>>(),
        dedup_key: a.dedup_key.unwrap_or_default(),
        started_at: a.started_at,
    }
}

fn declare(a: DeclareArgs, context: v1::CommandContext) -> v1::DeclareRequest {
    v1::DeclareRequest { context: Some(context), incident_id: a.incident, severity: a.severity as i32 }
}

fn override_severity(a: SeveritySetArgs, context: v1::CommandContext) -> v1::OverrideSeverityRequest {
    v1::OverrideSeverityRequest {
        context: Some(context),
        incident_id: a.incident,
        severity: a.severity as i32,
        reason: a.reason,
    }
}

fn assign_commander(a: AssignArgs, context: v1::CommandContext) -> v1::AssignCommanderRequest {
    v1::AssignCommanderRequest { context: Some(context), incident_id: a.incident, commander: a.commander }
}

fn request_handoff(a: HandoffRequestArgs, context: v1::CommandContext) -> v1::RequestHandoffRequest {
    v1::RequestHandoffRequest { context: Some(context), incident_id: a.incident, to: a.to }
}

fn accept_handoff(a: IncidentArg, context: v1::CommandContext) -> v1::AcceptHandoffRequest {
    v1::AcceptHandoffRequest { context: Some(context), incident_id: a.incident }
}

fn decline_handoff(a: ReasonArgs, context: v1::CommandContext) -> v1::DeclineHandoffRequest {
    v1::DeclineHandoffRequest { context: Some(context), incident_id: a.incident, reason: a.reason }
}

fn cancel_handoff(a: ReasonArgs, context: v1::CommandContext) -> v1::CancelHandoffRequest {
    v1::CancelHandoffRequest { context: Some(context), incident_id: a.incident, reason: a.reason }
}

fn remove_role(a: RoleArgs, context: v1::CommandContext) -> v1::RemoveRoleRequest {
    v1::RemoveRoleRequest { context: Some(context), incident_id: a.incident, role: a.role as i32, person: a.person }
}

fn assign_role(a: RoleArgs, context: v1::CommandContext) -> v1::AssignRoleRequest {
    v1::AssignRoleRequest {
        context: Some(context),
        incident_id: a.incident,
        role: a.role as i32,
        person: a.person,
        replaces: a.replaces.unwrap_or_default(),
    }
}

fn post_update(a: UpdateArgs, context: v1::CommandContext) -> v1::PostUpdateRequest {
    v1::PostUpdateRequest { context: Some(context), incident_id: a.incident, audience: a.audience as i32, text: a.text }
}

fn record_customer_impact(a: ImpactArgs, context: v1::CommandContext) -> v1::RecordCustomerImpactRequest {
    v1::RecordCustomerImpactRequest {
        context: Some(context),
        incident_id: a.incident,
        customers_affected: a.customers_affected,
        customers: a.customers,
        multi_customer: a.multi_customer,
        summary: a.summary,
    }
}

fn mitigate(a: SummaryArgs, context: v1::CommandContext) -> v1::MitigateRequest {
    v1::MitigateRequest { context: Some(context), incident_id: a.incident, summary: a.summary }
}

fn resolve(a: SummaryArgs, context: v1::CommandContext) -> v1::ResolveRequest {
    v1::ResolveRequest { context: Some(context), incident_id: a.incident, summary: a.summary }
}

fn reopen(a: ReasonArgs, context: v1::CommandContext) -> v1::ReopenRequest {
    v1::ReopenRequest { context: Some(context), incident_id: a.incident, reason: a.reason }
}

fn validate_resolution(a: NoteArgs, context: v1::CommandContext) -> v1::ValidateResolutionRequest {
    v1::ValidateResolutionRequest { context: Some(context), incident_id: a.incident, note: a.note }
}

fn list_incidents(a: ListArgs) -> v1::ListIncidentsRequest {
    v1::ListIncidentsRequest {
        statuses: a.statuses.into_iter().map(|s| s as i32).collect(),
        severities: a.severities.into_iter().map(|s| s as i32).collect(),
        service: a.service.unwrap_or_default(),
        page_size: a.limit.unwrap_or(0),
        page_token: String::new(),
        order: v1::ListOrder::Newest as i32,
    }
}

fn queue(a: QueueArgs) -> v1::ListIncidentsRequest {
    v1::ListIncidentsRequest {
        service: a.service.unwrap_or_default(),
        page_size: a.limit.unwrap_or(0),
        order: v1::ListOrder::Attention as i32,
        ..Default::default()
    }
}

/// The participant is left empty: the server puts in whoever the token
/// authenticates.
fn join(a: JoinArgs) -> v1::JoinBridge {
    v1::JoinBridge {
        incident_id: a.incident,
        participant: String::new(),
        role: a.role.unwrap_or(v1::IncidentRole::Unspecified) as i32,
    }
}

fn explain_severity(a: ExplainArgs) -> v1::ExplainSeverityRequest {
    v1::ExplainSeverityRequest { incident_id: a.incident.unwrap_or_default(), report: a.report }
}

fn test_policy(a: PolicyTestArgs) -> v1::TestPolicyRequest {
    v1::TestPolicyRequest { config_toml: a.config.text, from: a.from, until: a.until }
}

/// Reads a configuration file (at most 1 MiB, the server's limit).
fn read_config(path: &str) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    if text.len() > klaxon_domain::policy::CONFIG_BYTES_MAX {
        return Err(format!("{path} is larger than {} bytes", klaxon_domain::policy::CONFIG_BYTES_MAX));
    }
    Ok(ConfigFile { path: path.to_owned(), text })
}

/// A hypothetical report as its JSON file spells it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportFile {
    title: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    service: String,
    #[serde(default)]
    customers: Vec<String>,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    source: Option<String>,
}

/// Reads the JSON file of `severity explain --report`.
fn read_report(path: &str) -> Result<v1::HypotheticalReport, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let file: ReportFile = serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))?;
    let source = match &file.source {
        None => v1::ReportSource::Unspecified,
        Some(s) => convert::source_to_wire(domain::<ReportSource>(s).map_err(|e| format!("{path}: source: {e}"))?),
    };
    Ok(v1::HypotheticalReport {
        source: source as i32,
        title: file.title,
        description: file.description,
        service: file.service,
        customers: file.customers,
        labels: file.labels,
    })
}

fn list_pages(a: IncidentArg) -> v1::ListPagesRequest {
    v1::ListPagesRequest { incident_id: a.incident }
}

/// The acknowledgement carries the invocation's request id, so that a
/// retried `klaxon ack --request-id ID` writes nothing twice.
fn acknowledge(a: PageArg, context: v1::CommandContext) -> v1::AcknowledgeRequest {
    v1::AcknowledgeRequest { page_id: a.page, request_id: context.request_id }
}

/// `now` is sent as no timestamp, which the server reads as its own now.
fn oncall(a: OncallArgs, context: v1::CommandContext) -> Rpc {
    use v1::change_schedule_request::Change;
    let change = |schedule: String, change: Change| {
        Rpc::ChangeSchedule(v1::ChangeScheduleRequest {
            request_id: context.request_id.clone(),
            schedule,
            change: Some(change),
        })
    };
    match a.command {
        None => Rpc::WhoIsOnCall(who_is_on_call(a.who)),
        Some(OncallCommand::Who(w)) => Rpc::WhoIsOnCall(who_is_on_call(w)),
        Some(OncallCommand::Override(OverrideArgs { remove: Some(OverrideCommand::Remove(n)), .. })) => {
            change(n.schedule, Change::RemoveOverride(n.number))
        }
        Some(OncallCommand::Override(o)) => change(
            o.schedule.unwrap_or_default(),
            Change::AddOverride(v1::AddOverride { who: o.who.unwrap_or_default(), from: o.from, until: o.until }),
        ),
        Some(OncallCommand::Swap(SwapCommand::Request(r))) => change(
            r.schedule,
            Change::RequestSwap(v1::RequestSwap {
                requester: r.requester.unwrap_or_default(),
                from: Some(r.from),
                until: Some(r.until),
            }),
        ),
        Some(OncallCommand::Swap(SwapCommand::Take(t))) => change(
            t.swap.schedule,
            Change::TakeSwap(v1::TakeSwap { swap_id: t.swap.number, taker: t.taker.unwrap_or_default() }),
        ),
        Some(OncallCommand::Swap(SwapCommand::Cancel(n))) => change(n.schedule, Change::CancelSwap(n.number)),
        Some(OncallCommand::Swap(SwapCommand::Undo(n))) => change(n.schedule, Change::UndoSwap(n.number)),
        Some(OncallCommand::Coverage(c)) => Rpc::Coverage(v1::CoverageRequest { from: Some(c.from), to: Some(c.to) }),
    }
}

/// An override's or swap's number: `3`, `O3` or `S3`.
fn parse_number(s: &str) -> Result<u32, String> {
    let digits = s.trim().trim_start_matches(['O', 'o', 'S', 's']);
    match digits.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a number such as 3, O3 (an override) or S3 (a swap)".into()),
    }
}

fn who_is_on_call(a: WhoArgs) -> v1::WhoIsOnCallRequest {
    v1::WhoIsOnCallRequest {
        schedule: a.schedule.unwrap_or_default(),
        at: match a.at {
            At::Now => None,
            At::Time(t) => Some(t),
        },
    }
}

fn page_responder(a: PageResponderArgs, context: v1::CommandContext) -> v1::PageResponderRequest {
    use v1::page_responder_request::Target;
    let target = match (a.person, a.schedule, a.team) {
        (Some(person), _, _) => Target::Person(person),
        (_, Some(schedule), _) => Target::Schedule(schedule),
        // clap requires exactly one of the three.
        (_, _, team) => Target::Team(team.unwrap_or_default()),
    };
    v1::PageResponderRequest { context: Some(context), incident_id: a.incident, target: Some(target), reason: a.reason }
}

fn mark_noise(a: ReasonArgs, context: v1::CommandContext) -> v1::MarkNoiseRequest {
    v1::MarkNoiseRequest { context: Some(context), incident_id: a.incident, reason: a.reason }
}

fn feed_filter(a: WatchArgs) -> v1::FeedFilter {
    v1::FeedFilter {
        min_severity: a.min_severity.unwrap_or(v1::Severity::Unspecified) as i32,
        services: a.services,
        customers: a.customers,
        include_company_wide: a.company_wide,
    }
}

fn replay_timeline(a: TimelineArgs) -> v1::ReplayTimelineRequest {
    use v1::replay_timeline_request::AsOf;
    let as_of = match (a.as_of, a.as_of_position) {
        (Some(t), _) => Some(AsOf::AsOfTime(t)),
        (None, Some(p)) => Some(AsOf::AsOfPosition(p)),
        (None, None) => None,
    };
    v1::ReplayTimelineRequest { incident_id: a.incident, as_of }
}

/// `review show` and `review export` read the review; every other `review`
/// subcommand is one edit of it. Action items name their incident in their id.
fn review(c: ReviewCommand, context: v1::CommandContext) -> Rpc {
    use v1::edit_review_request::Edit;
    let (incident_id, edit) = match c {
        ReviewCommand::Show(a) => return Rpc::GetReview(v1::GetReviewRequest { incident_id: a.incident }),
        ReviewCommand::Export(a) => return Rpc::ExportMarkdown(v1::ExportMarkdownRequest { incident_id: a.incident }),
        ReviewCommand::Summary(a) => (a.incident, Edit::WriteSummary(a.text)),
        ReviewCommand::Impact(a) => (a.incident, Edit::WriteImpact(a.text)),
        ReviewCommand::Factor(a) => (a.incident, Edit::AddContributingFactor(a.text)),
        ReviewCommand::Publish(a) => (a.incident, Edit::Publish(true)),
        ReviewCommand::Action(ActionCommand::Add(ActionAddArgs { incident, title, owner: None, due: None })) => {
            (incident, Edit::AddActionItem(title))
        }
        ReviewCommand::Action(ActionCommand::Add(a)) => (
            a.incident,
            Edit::NewActionItem(v1::NewActionItem {
                title: a.title,
                owner: a.owner.unwrap_or_default(),
                due: a.due.unwrap_or_default(),
            }),
        ),
        ReviewCommand::Action(ActionCommand::Assign(a)) => {
            (incident_of(&a.item), Edit::AssignActionItem(v1::AssignActionItem { item_id: a.item, owner: a.owner }))
        }
        ReviewCommand::Action(ActionCommand::Due(a)) => {
            (incident_of(&a.item), Edit::SetActionItemDue(v1::SetActionItemDue { item_id: a.item, due: a.due }))
        }
        ReviewCommand::Action(ActionCommand::Done(a)) => (incident_of(&a.item), Edit::CompleteActionItem(a.item)),
    };
    Rpc::EditReview(v1::EditReviewRequest { context: Some(context), incident_id, edit: Some(edit) })
}

/// `INC-7` of the (already checked) item id `INC-7-A1`.
fn incident_of(item: &str) -> String {
    item.rsplit_once('-').map_or(item, |(incident, _)| incident).to_string()
}

fn audit(a: AuditArgs) -> v1::AuditRequest {
    v1::AuditRequest {
        actor: a.actor.unwrap_or_default(),
        from: a.from,
        until: a.until,
        kind_prefix: a.kind.unwrap_or_default(),
        after: 0,
        limit: 0,
    }
}

fn trends(a: TrendsArgs) -> v1::TrendsRequest {
    v1::TrendsRequest {
        from: Some(a.from),
        to: Some(a.to),
        service: a.service.unwrap_or_default(),
        team: a.team.unwrap_or_default(),
        severity: a.severity.map_or(0, i32::from),
    }
}

/// Parses with the domain's rules and keeps only the human reason of a
/// rejection (clap already names the flag).
fn domain<T: FromStr<Err = klaxon_domain::Error>>(s: &str) -> Result<T, String> {
    s.parse().map_err(|e| match e {
        klaxon_domain::Error::InvalidField { reason, .. } => reason,
        other => other.to_string(),
    })
}

/// An incident id in its canonical spelling (`inc-7` becomes `INC-7`).
fn parse_incident_id(s: &str) -> Result<String, String> {
    domain::<IncidentId>(s).map(|id| id.to_string())
}

/// A page id `INC-<n>-P<m>` in its canonical spelling (`inc-7-p1` becomes
/// `INC-7-P1`); like incident ids, both numbers are at least 1 and have no
/// leading zeros.
fn parse_page_id(s: &str) -> Result<String, String> {
    parse_child_id::<u64>(s, 'P', "page")
}

/// An action item id `INC-<n>-A<m>` in its canonical spelling (`inc-7-a1`
/// becomes `INC-7-A1`), with the rules of page ids.
fn parse_action_item_id(s: &str) -> Result<String, String> {
    parse_child_id::<u32>(s, 'A', "action item")
}

/// An id `INC-<n>-<letter><m>` of something belonging to incident `n`; `N`
/// bounds `m`.
fn parse_child_id<N: FromStr + std::fmt::Display>(s: &str, letter: char, what: &str) -> Result<String, String> {
    let expected = || format!("{s:?}: expected INC-<number>-{letter}<number>, such as INC-7-{letter}1");
    let (incident, child) = s.rsplit_once('-').ok_or_else(expected)?;
    let incident = parse_incident_id(incident).map_err(|_| expected())?;
    let digits = child.strip_prefix([letter, letter.to_ascii_lowercase()]).ok_or_else(expected)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(expected());
    }
    if digits.starts_with('0') {
        return Err(format!("{s:?}: the {what} number must be at least 1, without leading zeros"));
    }
    let n: N = digits.parse().map_err(|_| format!("{s:?}: the {what} number is too large"))?;
    Ok(format!("{incident}-{letter}{n}"))
}

fn parse_schedule(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty (leave it out for every schedule)".into());
    }
    Ok(s.to_string())
}

fn parse_at(s: &str) -> Result<At, String> {
    if s.trim().eq_ignore_ascii_case("now") {
        return Ok(At::Now);
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| At::Time(convert::timestamp(t.with_timezone(&Utc))))
        .map_err(|e| format!("expected `now` or an RFC 3339 time such as 2025-03-01T10:00:00Z ({e})"))
}

fn parse_severity(s: &str) -> Result<v1::Severity, String> {
    domain::<Severity>(s).map(convert::severity_to_wire)
}

fn parse_role(s: &str) -> Result<v1::IncidentRole, String> {
    domain::<IncidentRole>(s).map(convert::role_to_wire)
}

fn parse_audience(s: &str) -> Result<v1::Audience, String> {
    domain::<Audience>(s).map(convert::audience_to_wire)
}

fn parse_source(s: &str) -> Result<v1::ReportSource, String> {
    domain::<ReportSource>(s).map(convert::source_to_wire)
}

fn parse_status(s: &str) -> Result<v1::IncidentStatus, String> {
    const ALL: [Status; 5] = [Status::Reported, Status::Declared, Status::Mitigated, Status::Resolved, Status::Closed];
    let wanted = s.trim().to_ascii_lowercase();
    ALL.into_iter().find(|status| status.as_str() == wanted).map(convert::status_to_wire).ok_or_else(|| {
        let names: Vec<&str> = ALL.iter().map(|status| status.as_str()).collect();
        format!("{s:?} is not one of {}", names.join(", "))
    })
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err("expected KEY=VALUE with a non-empty KEY".into()),
    }
}

fn parse_time(s: &str) -> Result<prost_types::Timestamp, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| convert::timestamp(t.with_timezone(&Utc)))
        .map_err(|e| format!("expected an RFC 3339 time such as 2025-03-01T10:00:00Z ({e})"))
}

/// A calendar date, YYYY-MM-DD, in its canonical spelling.
fn parse_date(s: &str) -> Result<String, String> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map(|d| d.format("%Y-%m-%d").to_string())
        .map_err(|e| format!("expected a date YYYY-MM-DD such as 2025-03-01 ({e})"))
}

/// A date YYYY-MM-DD (its midnight UTC) or an RFC 3339 time.
fn parse_day_or_time(s: &str) -> Result<prost_types::Timestamp, String> {
    if let Ok(day) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Ok(convert::timestamp(day.and_time(chrono::NaiveTime::MIN).and_utc()));
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| convert::timestamp(t.with_timezone(&Utc)))
        .map_err(|e| format!("expected a date YYYY-MM-DD or an RFC 3339 time such as 2025-03-01T10:00:00Z ({e})"))
}

/// One URL, or several separated by commas (replicas, tried in order).
fn parse_server(s: &str) -> Result<String, String> {
    let mut servers = Vec::new();
    for server in s.split(',').map(str::trim) {
        let uri: tonic::transport::Uri = server.parse().map_err(|e| format!("{server:?} is not a URL: {e}"))?;
        match (uri.scheme_str(), uri.authority()) {
            (Some("http" | "https"), Some(_)) => servers.push(server.trim_end_matches('/').to_string()),
            _ => return Err("expected http://HOST:PORT or https://HOST:PORT (several: comma-separated)".into()),
        }
    }
    Ok(servers.join(","))
}

/// A token as the `authorization: Bearer …` header value.
fn parse_token(s: &str) -> Result<AsciiMetadataValue, String> {
    let token = s.trim();
    if token.is_empty() {
        // Most often `export KLAXON_TOKEN=$(klaxond token create …)` whose
        // command failed: say where an empty value comes from.
        return Err("is empty: set KLAXON_TOKEN (or --token, --token-file) to the token `klaxond token create` \
                    printed"
            .into());
    }
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        return Err("must be the token `klaxond token create` printed (printable ASCII, no spaces)".into());
    }
    format!("Bearer {token}").parse().map_err(|_| "is not valid header text".to_string())
}

/// A PEM file holding at least one certificate, for `--client-cert`.
fn read_certificate(path: &str) -> Result<Pem, String> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    match CertificateDer::pem_slice_iter(&pem).next() {
        Some(Ok(_)) => Ok(Pem(pem)),
        Some(Err(e)) => Err(format!("{path} is not valid PEM: {e}")),
        None => Err(format!("{path} holds no PEM certificate")),
    }
}

/// A PEM file holding a private key, for `--client-key`.
fn read_private_key(path: &str) -> Result<Pem, String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| format!("{path} holds no PEM private key: {e}"))?;
    Ok(Pem(pem))
}

/// The token in a file (surrounding whitespace ignored).
fn read_token_file(path: &str) -> Result<AsciiMetadataValue, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
    parse_token(&text).map_err(|e| format!("{path}: the token {e}"))
}
