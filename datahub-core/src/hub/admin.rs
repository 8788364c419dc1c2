//! Administration through the Hub: the target policy, the audit log, and keys.

use std::net::IpAddr;

use super::{Hub, target};
use crate::audit::{AuditRecord, ChainBreak, ChainVerifier, Outcome};
use crate::crypto::KekId;
use crate::keys::{self, KeyStatus, RotationReport};
use crate::model::{AuditQuery, Page, TargetPolicy};
use crate::rbac::{Action, Principal, act};
use crate::{Error, Result};

/// How many audit records verification reads per store call.
const VERIFY_BATCH: u32 = 1_000;

/// The result of verifying the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditVerification {
    /// How many records verified before the first break (all of them when there is none).
    pub checked: u64,
    /// The first record that does not fit the chain, if any.
    pub first_break: Option<ChainBreak>,
}

impl Hub {
    /// The target policy.
    ///
    /// # Errors
    /// `PermissionDenied` when the role may not read it.
    pub async fn policy(&self, principal: &Principal) -> Result<TargetPolicy> {
        principal.check::<act::PolicyRead>()?;
        self.store.policy().await
    }

    /// Replaces the target policy (admins). CIDRs are normalised (`127.1.2.3/8` → `127.0.0.0/8`).
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `InvalidInput` naming the CIDR (`allow_cidrs[2]`).
    pub async fn set_policy(
        &self,
        principal: &Principal,
        policy: TargetPolicy,
    ) -> Result<TargetPolicy> {
        let allowed = match principal.check::<act::PolicyWrite>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::PolicyWrite, Some("policy"), e)
                    .await;
            }
        };
        let policy = TargetPolicy {
            allow_cidrs: normalise_cidrs("allow_cidrs", &policy.allow_cidrs)?,
            deny_cidrs: normalise_cidrs("deny_cidrs", &policy.deny_cidrs)?,
            min_tls_mode: policy.min_tls_mode,
        };
        let event = self
            .event(principal, allowed.action(), Some("policy"), Outcome::Ok)
            .with_changed_fields(&["allow_cidrs", "deny_cidrs", "min_tls_mode"]);
        // Dropped whatever the outcome: a failed write may still have committed.
        let saved = self.store.set_policy(&policy, &event).await;
        self.check_policy.invalidate();
        saved?;
        Ok(policy)
    }

    /// One page of the audit log, newest first (admins and auditors).
    ///
    /// # Errors
    /// `PermissionDenied` (audited) for other roles; `InvalidInput` on `page`/`per_page`.
    pub async fn audit_log(
        &self,
        principal: &Principal,
        query: &AuditQuery,
    ) -> Result<Page<AuditRecord>> {
        if let Err(e) = principal.check::<act::AuditRead>() {
            return self
                .refuse(principal, Action::AuditRead, Some("audit"), e)
                .await;
        }
        self.store.audit_page(query).await
    }

    /// Verifies the whole audit chain and reports the first record that does not fit (admins
    /// and auditors). The verification itself is audited afterwards.
    ///
    /// # Errors
    /// `PermissionDenied` (audited) for other roles; `Store` when the store fails.
    pub async fn verify_audit(&self, principal: &Principal) -> Result<AuditVerification> {
        let allowed = match principal.check::<act::AuditVerify>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::AuditVerify, Some("audit"), e)
                    .await;
            }
        };
        let mut verifier = ChainVerifier::new();
        let mut after = 0;
        let mut first_break = None;
        'pages: loop {
            let batch = self.store.audit_after(after, VERIFY_BATCH).await?;
            let Some(last) = batch.last() else { break };
            after = last.seq;
            for record in &batch {
                if let Err(b) = verifier.push(record) {
                    first_break = Some(b);
                    break 'pages;
                }
            }
        }
        let outcome = if first_break.is_some() {
            Outcome::Error
        } else {
            Outcome::Ok
        };
        let event = self.event(principal, allowed.action(), Some("audit"), outcome);
        self.audit(&event).await?;
        Ok(AuditVerification {
            checked: verifier.checked(),
            first_break,
        })
    }

    /// Each key and how many rows it wraps (admins).
    ///
    /// # Errors
    /// `PermissionDenied` for other roles.
    pub async fn key_status(&self, principal: &Principal) -> Result<Vec<KeyStatus>> {
        principal.check::<act::KeysStatus>()?;
        keys::key_status(self.store.as_ref(), &self.keyring).await
    }

    /// Re-wraps every data key under the active key, in batches of `batch` (admins). Resumable
    /// and safe to repeat; audited with the counts.
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `InvalidInput` on `batch` = 0; `Store`.
    pub async fn rotate_keys(&self, principal: &Principal, batch: u32) -> Result<RotationReport> {
        let key_target = target("keyring", self.keyring.active_id());
        let allowed = match principal.check::<act::KeysRotate>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::KeysRotate, Some(&key_target), e)
                    .await;
            }
        };
        let result = keys::rotate(self.store.as_ref(), &self.keyring, batch).await;
        let (outcome, counts) = match &result {
            Ok(r) => (
                if r.failed.is_empty() {
                    Outcome::Ok
                } else {
                    Outcome::Error
                },
                vec![
                    format!("rewrapped={}", r.rewrapped),
                    format!("skipped={}", r.skipped),
                    format!("failed={}", r.failed.len()),
                ],
            ),
            Err(_) => (Outcome::Error, Vec::new()),
        };
        let event = self
            .event(principal, allowed.action(), Some(&key_target), outcome)
            .with_changed_fields(&counts);
        self.audit(&event).await?;
        result
    }

    /// Checks that a key may be retired — not active, and wrapping no row — then deletes its key
    /// check and audits the retirement (admins). Remove the key from the keyring source
    /// afterwards.
    ///
    /// # Errors
    /// `PermissionDenied` (audited); `Conflict` when it is active or still wraps rows (audited
    /// as an error).
    pub async fn retire_key(&self, principal: &Principal, id: &KekId) -> Result<()> {
        let key_target = target("keyring", id);
        let allowed = match principal.check::<act::KeysRetire>() {
            Ok(a) => a,
            Err(e) => {
                return self
                    .refuse(principal, Action::KeysRetire, Some(&key_target), e)
                    .await;
            }
        };
        let result = keys::check_retire(self.store.as_ref(), &self.keyring, id).await;
        let outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        let event = self.event(principal, allowed.action(), Some(&key_target), outcome);
        if result.is_ok() {
            // The key's check goes with it (in the audit row's transaction): a retired key
            // must not be asked of the keyring at the next start (S28).
            self.store.delete_key_check(id, &event).await?;
        } else {
            self.audit(&event).await?;
        }
        result
    }
}

/// Parses and normalises CIDRs (`addr/prefix`, or a bare address for one host).
fn normalise_cidrs(field: &str, cidrs: &[String]) -> Result<Vec<String>> {
    cidrs
        .iter()
        .enumerate()
        .map(|(i, c)| {
            normalise_cidr(c.trim()).ok_or_else(|| {
                Error::invalid(
                    format!("{field}[{i}]"),
                    "must be an IP network such as 127.0.0.0/8 or ::1/128",
                )
            })
        })
        .collect()
}

fn normalise_cidr(text: &str) -> Option<String> {
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let addr: IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix: u8 = match prefix {
        None => max,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
            p.parse().ok()?
        }
        Some(_) => return None,
    };
    if prefix > max {
        return None;
    }
    let network = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(u32::from(32 - prefix)).unwrap_or(0);
            IpAddr::from((u32::from(a) & mask).to_be_bytes())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(u32::from(128 - prefix)).unwrap_or(0);
            IpAddr::from((u128::from(a) & mask).to_be_bytes())
        }
    };
    Some(format!("{network}/{prefix}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_parsed_and_normalised() {
        for (input, expected) in [
            ("127.0.0.1", Some("127.0.0.1/32")),
            ("127.1.2.3/8", Some("127.0.0.0/8")),
            ("0.0.0.0/0", Some("0.0.0.0/0")),
            ("::1", Some("::1/128")),
            ("fe80::1/10", Some("fe80::/10")),
            ("::/0", Some("::/0")),
            ("127.0.0.1/33", None),
            ("127.0.0.1/", None),
            ("127.0.0.1/+8", None),
            ("127.1/8", None),
            ("localhost/8", None),
            ("", None),
            ("::1/129", None),
        ] {
            assert_eq!(normalise_cidr(input).as_deref(), expected, "{input}");
        }
        let err = normalise_cidrs("deny_cidrs", &["::1".into(), "x".into()]).unwrap_err();
        assert_eq!(err.field(), Some("deny_cidrs[1]"));
    }
}
