//! The JSON of the audit log: an entry, a page of entries and the verification of the hash
//! chain. Entries name changed fields, never their values.

use datahub_core::audit::{AuditRecord, ChainBreak, Outcome};
use datahub_core::hub::AuditVerification;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

/// How an audited attempt ended.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AuditOutcome {
    /// It was done.
    Ok,
    /// Permission was refused.
    Denied,
    /// It was allowed but failed.
    Error,
}

impl From<Outcome> for AuditOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ok => Self::Ok,
            Outcome::Denied => Self::Denied,
            Outcome::Error => Self::Error,
        }
    }
}

/// One audit log entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the log, from 1, without gaps.
    pub seq: u64,
    /// When (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub at: OffsetDateTime,
    /// The acting user's id; absent for the system or an unknown caller.
    pub actor: Option<Uuid>,
    /// The actor's name at the time (escaped).
    pub actor_name: String,
    /// What was done, e.g. `connection.create`.
    pub action: String,
    /// What it was done to, e.g. `connection:<id>`.
    pub target: Option<String>,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The names of the fields changed (never their values).
    pub changed_fields: Vec<String>,
    /// The client's address, when known.
    pub client_addr: Option<String>,
    /// The request id, to find the matching log lines.
    pub request_id: Option<String>,
    /// This entry's SHA-256 chain hash, hex.
    pub hash: String,
}

impl From<AuditRecord> for AuditEntry {
    fn from(record: AuditRecord) -> Self {
        let event = record.event;
        Self {
            seq: record.seq,
            at: event.at,
            actor: event.actor.map(|a| *a.as_uuid()),
            actor_name: event.actor_name,
            action: event.action,
            target: event.target,
            outcome: event.outcome.into(),
            changed_fields: event.changed_fields,
            client_addr: event.client_addr,
            request_id: event.request_id,
            hash: hex(&record.hash),
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One page of the audit log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The entries of this page, newest first.
    pub items: Vec<AuditEntry>,
    /// How many entries match in all.
    pub total: u64,
    /// This page, from 1.
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
}

/// Where the chain first fails to verify.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditChainBreak {
    /// `gap` (an entry is missing or out of order), `link` (an entry does not link to the one
    /// before) or `content` (an entry was altered).
    pub kind: &'static str,
    /// The entry at fault (for a gap: the one found where another was expected).
    pub seq: u64,
    /// For a gap: the entry expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<u64>,
    /// A sentence saying what is wrong.
    pub message: String,
}

impl From<ChainBreak> for AuditChainBreak {
    fn from(b: ChainBreak) -> Self {
        let message = b.to_string();
        match b {
            ChainBreak::Gap { expected, found } => Self {
                kind: "gap",
                seq: found,
                expected: Some(expected),
                message,
            },
            ChainBreak::Link { seq } => Self {
                kind: "link",
                seq,
                expected: None,
                message,
            },
            ChainBreak::Content { seq } => Self {
                kind: "content",
                seq,
                expected: None,
                message,
            },
        }
    }
}

/// The result of verifying the audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditVerifyReport {
    /// Whether the whole chain verifies.
    pub ok: bool,
    /// How many entries verified before the first break (all of them when there is none).
    pub checked: u64,
    /// The first entry that does not fit, if any.
    pub first_break: Option<AuditChainBreak>,
}

impl From<AuditVerification> for AuditVerifyReport {
    fn from(v: AuditVerification) -> Self {
        Self {
            ok: v.first_break.is_none(),
            checked: v.checked,
            first_break: v.first_break.map(AuditChainBreak::from),
        }
    }
}
