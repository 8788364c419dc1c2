//! `audit verify|tail`: the hash-chained audit log.

use std::time::Duration;

use clap::Subcommand;
use datahub_core::audit::AuditRecord;
use datahub_core::hub::Hub;
use datahub_core::model::{AuditQuery, MAX_PER_PAGE};
use datahub_core::rbac::Principal;

use super::{CliError, CliResult, Output, OutputArgs};
use crate::api::audit::{AuditEntry, AuditVerifyReport};
use crate::config::Settings;

/// `datahub-server audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify the whole hash chain; exits 1 and names the first bad entry when it is broken.
    Verify {
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Show the last entries, oldest first (JSON: an array, or one object per line with
    /// --follow).
    Tail {
        /// How many entries.
        #[arg(short = 'n', long, default_value_t = 20)]
        lines: u32,
        /// Keep printing new entries as they are written (until Ctrl-C).
        #[arg(long, short = 'f')]
        follow: bool,
        /// How often --follow looks for new entries, in milliseconds.
        #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(50..))]
        interval_ms: u64,
        #[command(flatten)]
        out: OutputArgs,
    },
}

pub(crate) async fn run(command: AuditCommand, settings: &Settings) -> CliResult {
    let (hub, op) = super::open(settings, false).await?;
    match command {
        AuditCommand::Verify { out } => {
            let v = hub.verify_audit(&op).await?;
            let json = AuditVerifyReport::from(v);
            match out.output {
                Output::Json => super::print_json(&json)?,
                Output::Table => match &json.first_break {
                    None => println!(
                        "the audit chain is intact: {} entries verified",
                        json.checked
                    ),
                    Some(b) => println!(
                        "the audit chain is BROKEN at entry {}: {} ({} entries verified before it)",
                        b.expected.unwrap_or(b.seq),
                        b.message,
                        json.checked
                    ),
                },
            }
            if json.ok {
                Ok(())
            } else {
                Err(CliError::silent())
            }
        }
        AuditCommand::Tail {
            lines,
            follow,
            interval_ms,
            out,
        } => {
            let mut records = last(&hub, &op, lines).await?;
            records.reverse();
            let mut seen = records.last().map_or(0, |r| r.seq);
            if !follow {
                return match out.output {
                    Output::Json => {
                        super::print_json(&records.iter().map(entry).collect::<Vec<_>>())
                    }
                    Output::Table => print_table(&records),
                };
            }
            print_lines(&records, out.output)?;
            let interval = Duration::from_millis(interval_ms);
            loop {
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
                let mut fresh: Vec<AuditRecord> = last(&hub, &op, MAX_PER_PAGE)
                    .await?
                    .into_iter()
                    .filter(|r| r.seq > seen)
                    .collect();
                fresh.reverse();
                if let Some(r) = fresh.last() {
                    seen = r.seq;
                }
                print_lines(&fresh, out.output)?;
            }
        }
    }
}

/// An entry as printed with `--output json`: the API's [`AuditEntry`].
fn entry(record: &AuditRecord) -> AuditEntry {
    AuditEntry::from(record.clone())
}

/// The newest `n` entries, newest first.
async fn last(hub: &Hub, op: &Principal, n: u32) -> CliResult<Vec<AuditRecord>> {
    let mut out = Vec::new();
    let mut page = 1;
    while (out.len() as u64) < u64::from(n) {
        let per_page = MAX_PER_PAGE.min(n);
        let query = AuditQuery {
            actor: None,
            action: None,
            target: None,
            since: None,
            until: None,
            page,
            per_page,
        };
        let got = hub.audit_log(op, &query).await?;
        let done = got.items.len() < per_page as usize;
        out.extend(got.items);
        if done {
            break;
        }
        page += 1;
    }
    out.truncate(n as usize);
    Ok(out)
}

fn print_table(records: &[AuditRecord]) -> CliResult {
    let mut t = super::table([
        "seq", "at", "actor", "action", "target", "outcome", "fields",
    ]);
    for r in records {
        let e = &r.event;
        t.add_row([
            r.seq.to_string(),
            super::rfc3339(e.at),
            e.actor_name.clone(),
            e.action.clone(),
            e.target.clone().unwrap_or_else(|| "-".to_owned()),
            e.outcome.as_str().to_owned(),
            e.changed_fields.join(","),
        ]);
    }
    super::print_table(&t)
}

/// One line per entry (for --follow): JSON objects, or space-separated fields.
fn print_lines(records: &[AuditRecord], output: Output) -> CliResult {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    for r in records {
        match output {
            Output::Json => {
                let line = serde_json::to_string(&entry(r))
                    .map_err(|e| CliError::failed(format!("could not encode the output: {e}")))?;
                writeln!(out, "{line}")?;
            }
            Output::Table => {
                let e = &r.event;
                writeln!(
                    out,
                    "{} {} {} {} {} {}",
                    r.seq,
                    super::rfc3339(e.at),
                    e.actor_name,
                    e.action,
                    e.target.as_deref().unwrap_or("-"),
                    e.outcome
                )?;
            }
        }
    }
    out.flush()?;
    Ok(())
}
