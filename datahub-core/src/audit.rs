//! The tamper-evident audit log: what an entry holds, how entries are chained, how a chain is
//! verified.
//!
//! Every entry carries the SHA-256 of the entry before it; an entry's own hash covers its
//! sequence number, the previous hash and a canonical, length-prefixed encoding of every field.
//! Editing, deleting or reordering a stored entry therefore breaks the chain at that entry, and
//! [`ChainVerifier`] reports the first one that does not fit. The stores append entries (one
//! writer at a time, so the chain stays linear) and hand them back in order; the hashing lives
//! here so both stores chain identically.
//!
//! It must never hold a secret: entries name changed fields, never their values. Free text
//! (actor names, targets) is escaped on the way in, so a name with newlines or terminal escapes
//! cannot forge a line in a log viewer.

use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::UserId;

/// The hash an entry with sequence number 1 chains to.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// How an audited attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// It was done.
    Ok,
    /// Permission was refused.
    Denied,
    /// It was allowed but failed.
    Error,
}

impl Outcome {
    /// The stable lowercase name, as stored.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Ok, Self::Denied, Self::Error]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an adapter's request came from, for the audit log. `Default`: unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The client's address, as the adapter saw it.
    pub client_addr: Option<String>,
    /// The adapter's request id.
    pub request_id: Option<String>,
}

/// One audited action, before the store gives it a place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When it happened, in UTC, truncated to whole microseconds (what both stores keep).
    pub at: OffsetDateTime,
    /// Who acted; `None` for the system or an unauthenticated caller.
    pub actor: Option<UserId>,
    /// The actor's name at the time (escaped), or a placeholder such as `anonymous`.
    pub actor_name: String,
    /// What was done, a stable dotted name such as `connection.create`.
    pub action: String,
    /// What it was done to (escaped), e.g. `connection:<uuid>`; `None` when nothing specific.
    pub target: Option<String>,
    /// How it ended.
    pub outcome: Outcome,
    /// The names of the fields it changed. Names only, never values.
    pub changed_fields: Vec<String>,
    /// The client's address, when an adapter knows it.
    pub client_addr: Option<String>,
    /// The adapter's request id, to find the matching log lines.
    pub request_id: Option<String>,
}

impl AuditEvent {
    /// An event happening now, with free text escaped and the time truncated to microseconds.
    pub fn now(
        actor: Option<UserId>,
        actor_name: &str,
        action: &str,
        target: Option<&str>,
        outcome: Outcome,
    ) -> Self {
        Self {
            at: truncate_to_micros(OffsetDateTime::now_utc()),
            actor,
            actor_name: escape(actor_name),
            action: escape(action),
            target: target.map(escape),
            outcome,
            changed_fields: Vec::new(),
            client_addr: None,
            request_id: None,
        }
    }

    /// Sets the changed field names (escaped).
    pub fn with_changed_fields<S: AsRef<str>>(mut self, fields: &[S]) -> Self {
        self.changed_fields = fields.iter().map(|f| escape(f.as_ref())).collect();
        self
    }

    /// Sets the client address and request id (escaped).
    pub fn with_request(mut self, client_addr: Option<&str>, request_id: Option<&str>) -> Self {
        self.client_addr = client_addr.map(escape);
        self.request_id = request_id.map(escape);
        self
    }

    /// Sets the client address and request id from an adapter's [`RequestInfo`] (escaped).
    pub fn with_request_info(self, request: &RequestInfo) -> Self {
        self.with_request(
            request.client_addr.as_deref(),
            request.request_id.as_deref(),
        )
    }
}

/// An entry as stored: the event, its place in the chain, and the hashes that chain it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the log, starting at 1, without gaps.
    pub seq: u64,
    /// What happened.
    pub event: AuditEvent,
    /// The hash of the entry before ([`GENESIS_HASH`] for the first).
    pub prev_hash: [u8; 32],
    /// This entry's hash, see [`chain_hash`].
    pub hash: [u8; 32],
}

impl AuditRecord {
    /// Seals `event` as entry `seq` after an entry whose hash is `prev_hash`.
    pub fn chain(seq: u64, prev_hash: [u8; 32], event: AuditEvent) -> Self {
        let hash = chain_hash(seq, &prev_hash, &event);
        Self {
            seq,
            event,
            prev_hash,
            hash,
        }
    }
}

/// The hash of entry `seq` holding `event`, after an entry whose hash is `prev_hash`.
///
/// SHA-256 over a domain label, the sequence number, the previous hash and every field of the
/// event, each length-prefixed (so no two different events encode alike). This is a stored
/// format: changing it invalidates every stored chain.
pub fn chain_hash(seq: u64, prev_hash: &[u8; 32], event: &AuditEvent) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(CHAIN_LABEL);
    h.update(seq.to_be_bytes());
    h.update(prev_hash);
    h.update(event_bytes(event));
    h.finalize().into()
}

/// The domain label an entry's hash starts with.
pub(crate) const CHAIN_LABEL: &[u8] = b"datahub-connections/audit/v1";

/// The part of an entry's hash input after the sequence number (8 bytes, big-endian) and the
/// previous hash: every field of `event`. A store that computes the hash itself (PostgreSQL,
/// in the statement that appends under the lock) hashes [`CHAIN_LABEL`], the number, the
/// previous hash and these bytes, as [`chain_hash`] does.
pub(crate) fn event_bytes(event: &AuditEvent) -> Vec<u8> {
    let mut b = Vec::with_capacity(128);
    let micros = event.at.unix_timestamp_nanos() / 1_000;
    b.extend_from_slice(&micros.to_be_bytes());
    put_opt(
        &mut b,
        event.actor.as_ref().map(|a| a.as_bytes().as_slice()),
    );
    put(&mut b, event.actor_name.as_bytes());
    put(&mut b, event.action.as_bytes());
    put_opt(&mut b, event.target.as_deref().map(str::as_bytes));
    put(&mut b, event.outcome.as_str().as_bytes());
    b.extend_from_slice(&(event.changed_fields.len() as u64).to_be_bytes());
    for f in &event.changed_fields {
        put(&mut b, f.as_bytes());
    }
    put_opt(&mut b, event.client_addr.as_deref().map(str::as_bytes));
    put_opt(&mut b, event.request_id.as_deref().map(str::as_bytes));
    b
}

fn put(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    b.extend_from_slice(bytes);
}

fn put_opt(b: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => b.push(0),
        Some(bytes) => {
            b.push(1);
            put(b, bytes);
        }
    }
}

/// Truncates a time to whole microseconds, in UTC: the precision both stores keep, so an event
/// hashes the same before it is stored and after it is read back.
pub fn truncate_to_micros(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    let nanos = at.nanosecond();
    at.replace_nanosecond(nanos - nanos % 1_000).unwrap_or(at)
}

/// Escapes control characters, bidi controls and other invisible format characters as
/// `\u{..}` (and the backslash itself), so stored free text displays as one honest line.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '\\' {
            out.push_str("\\\\");
        } else if c.is_control() || is_invisible_format(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `c` is a bidi control or another invisible format character.
pub(crate) fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// Why a chain does not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainBreak {
    /// An entry's sequence number is not the one after the previous (an entry was deleted or
    /// reordered).
    Gap {
        /// The sequence number expected here.
        expected: u64,
        /// The one found.
        found: u64,
    },
    /// An entry's previous-hash is not the previous entry's hash.
    Link {
        /// The entry that does not link.
        seq: u64,
    },
    /// An entry's hash does not match its content (it was edited).
    Content {
        /// The edited entry.
        seq: u64,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Gap { expected, found } => {
                write!(
                    f,
                    "entry {expected} is missing (found {found} in its place)"
                )
            }
            Self::Link { seq } => write!(f, "entry {seq} does not link to the entry before it"),
            Self::Content { seq } => write!(f, "entry {seq} was altered after it was written"),
        }
    }
}

/// Checks a chain entry by entry, in sequence order, without holding it all in memory.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    next_seq: u64,
    prev_hash: [u8; 32],
    checked: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self::new()
    }
}

impl ChainVerifier {
    /// A verifier expecting entry 1 next.
    pub fn new() -> Self {
        Self {
            next_seq: 1,
            prev_hash: GENESIS_HASH,
            checked: 0,
        }
    }

    /// Checks the next entry.
    ///
    /// # Errors
    /// The first way in which it does not fit the chain so far.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        if record.seq != self.next_seq {
            return Err(ChainBreak::Gap {
                expected: self.next_seq,
                found: record.seq,
            });
        }
        if record.prev_hash != self.prev_hash {
            return Err(ChainBreak::Link { seq: record.seq });
        }
        if chain_hash(record.seq, &record.prev_hash, &record.event) != record.hash {
            return Err(ChainBreak::Content { seq: record.seq });
        }
        self.next_seq = record.seq.saturating_add(1);
        self.prev_hash = record.hash;
        self.checked += 1;
        Ok(())
    }

    /// How many entries verified so far.
    pub fn checked(&self) -> u64 {
        self.checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::now(
                    Some(UserId::new()),
                    "alice",
                    "connection.update",
                    Some("connection:x"),
                    Outcome::Ok,
                )
                .with_changed_fields(&["host", "password"]);
                let r = AuditRecord::chain(seq, prev, e);
                prev = r.hash;
                r
            })
            .collect()
    }

    fn verify(records: &[AuditRecord]) -> Result<u64, ChainBreak> {
        let mut v = ChainVerifier::new();
        for r in records {
            v.push(r)?;
        }
        Ok(v.checked())
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
    }

    #[test]
    fn edits_deletions_and_reorders_are_found_at_their_entry() {
        let good = chain(5);

        let mut edited = good.clone();
        edited[2].event.outcome = Outcome::Denied;
        assert_eq!(verify(&edited), Err(ChainBreak::Content { seq: 3 }));

        let mut deleted = good.clone();
        deleted.remove(3);
        assert_eq!(
            verify(&deleted),
            Err(ChainBreak::Gap {
                expected: 4,
                found: 5
            })
        );

        // Deleting and renumbering is caught by the links.
        let mut renumbered = good.clone();
        renumbered.remove(1);
        for (i, r) in renumbered.iter_mut().enumerate() {
            r.seq = i as u64 + 1;
        }
        assert!(matches!(
            verify(&renumbered),
            Err(ChainBreak::Link { seq: 2 })
        ));

        let mut swapped = good;
        swapped.swap(1, 2);
        assert!(verify(&swapped).is_err());
    }

    /// The stored format, pinned: a known entry's hash (computed apart from this code, from
    /// the format as documented).
    #[test]
    fn a_known_entry_hashes_to_its_known_answer() {
        let event = AuditEvent {
            // 2026-01-02T03:04:05.123456Z.
            at: OffsetDateTime::from_unix_timestamp_nanos(1_767_323_045_123_456_000).unwrap(),
            actor: Some(UserId::from_uuid(uuid::Uuid::from_u128(
                0x0011_2233_4455_6677_8899_aabb_ccdd_eeff,
            ))),
            actor_name: "alice".into(),
            action: "connection.test".into(),
            target: Some("connection:x".into()),
            outcome: Outcome::Error,
            changed_fields: vec!["error_kind=timeout".into()],
            client_addr: Some("127.0.0.1".into()),
            request_id: None,
        };
        let hash = chain_hash(7, &[0x11; 32], &event);
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "8085ea9f494a5b9ea3892394370747cf22514c94df9557ee9343a9f277ba3dc8"
        );
    }

    #[test]
    fn every_field_is_covered_by_the_hash() {
        let base = chain(1).remove(0);
        let h = |r: &AuditRecord| chain_hash(r.seq, &r.prev_hash, &r.event);
        let mut variants = Vec::new();
        let mut r = base.clone();
        r.event.at += time::Duration::microseconds(1);
        variants.push(r);
        let mut r = base.clone();
        r.event.actor = None;
        variants.push(r);
        let mut r = base.clone();
        r.event.actor_name.push('x');
        variants.push(r);
        let mut r = base.clone();
        r.event.action.push('x');
        variants.push(r);
        let mut r = base.clone();
        r.event.target = None;
        variants.push(r);
        let mut r = base.clone();
        r.event.changed_fields.pop();
        variants.push(r);
        let mut r = base.clone();
        r.event.client_addr = Some("127.0.0.1".into());
        variants.push(r);
        let mut r = base.clone();
        r.event.request_id = Some("r1".into());
        variants.push(r);
        let mut r = base.clone();
        r.event.changed_fields = vec!["hostpassword".into()];
        variants.push(r);
        for v in &variants {
            assert_ne!(h(v), base.hash, "{v:?}");
        }
    }

    #[test]
    fn free_text_is_escaped() {
        let e = AuditEvent::now(
            None,
            "mallory\n2026-01-01 admin login ok\u{202E}",
            "auth.login",
            Some("a\\b\x1b[31m"),
            Outcome::Denied,
        );
        assert_eq!(
            e.actor_name,
            "mallory\\u{a}2026-01-01 admin login ok\\u{202e}"
        );
        assert_eq!(e.target.as_deref(), Some("a\\\\b\\u{1b}[31m"));
        assert_eq!(e.at.nanosecond() % 1_000, 0);
    }
}
