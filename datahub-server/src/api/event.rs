//! The JSON of the event stream (`GET /api/v1/events`): one [`StreamEvent`] per `data:` line,
//! carrying ids, statuses, latencies, failure kinds and times only.

use datahub_core::model::{FailureKind, HealthStatus};
use datahub_core::monitor::MonitorEvent;
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

/// One event of the stream: the JSON of one `data:` line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// A connection's health status changed.
    StatusChanged {
        /// The connection.
        id: Uuid,
        /// The status before the check.
        from: StreamStatus,
        /// The status after the check.
        to: StreamStatus,
        /// When the check finished, RFC 3339 (UTC).
        #[schema(format = DateTime)]
        at: String,
    },
    /// The monitor recorded a check of a connection (every check, after `status_changed` when
    /// the status changed too).
    Checked {
        /// The connection.
        id: Uuid,
        /// The status after the check.
        status: StreamStatus,
        /// This check's total time in milliseconds.
        latency_ms: u32,
        /// Why it failed (as in the connection's `health.error_kind`); `null` on success.
        error_kind: Option<&'static str>,
        /// When the check finished, RFC 3339 (UTC).
        #[schema(format = DateTime)]
        at: String,
    },
    /// A connection was created or edited (or the caller's access to it changed): reload it.
    ConnectionChanged {
        /// The connection.
        id: Uuid,
    },
    /// A connection the caller could view was deleted.
    ConnectionDeleted {
        /// The connection.
        id: Uuid,
    },
    /// The stream fell behind and lost events: reload everything shown.
    Resync,
}

/// A connection's health status, as in the connection's `health.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StreamStatus {
    /// Never checked, or monitoring is off.
    Unknown,
    /// The last checks succeeded in time.
    Healthy,
    /// Slow, failing fewer times in a row than the `down` threshold, or a certificate expires
    /// soon.
    Degraded,
    /// Failing repeatedly.
    Down,
}

impl From<HealthStatus> for StreamStatus {
    fn from(status: HealthStatus) -> Self {
        match status {
            HealthStatus::Unknown => Self::Unknown,
            HealthStatus::Healthy => Self::Healthy,
            HealthStatus::Degraded => Self::Degraded,
            HealthStatus::Down => Self::Down,
        }
    }
}

impl StreamEvent {
    /// The stream's form of a monitor event.
    pub fn from_monitor(event: &MonitorEvent) -> Self {
        let id = *event.id().as_uuid();
        match event {
            MonitorEvent::StatusChanged { from, to, at, .. } => Self::StatusChanged {
                id,
                from: (*from).into(),
                to: (*to).into(),
                at: rfc3339(*at),
            },
            MonitorEvent::Checked {
                status,
                latency_ms,
                error_kind,
                at,
                ..
            } => Self::Checked {
                id,
                status: (*status).into(),
                latency_ms: *latency_ms,
                error_kind: error_kind.map(FailureKind::as_str),
                at: rfc3339(*at),
            },
            MonitorEvent::ConnectionDeleted { .. } => Self::ConnectionDeleted { id },
            // `MonitorEvent` is non-exhaustive: anything new about a connection means "reload
            // it" until the stream learns a better word for it.
            _ => Self::ConnectionChanged { id },
        }
    }
}

/// `at` in RFC 3339, UTC.
fn rfc3339(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use datahub_core::ConnectionId;

    use super::*;

    #[test]
    fn events_are_typed_json_with_ids_only() {
        let id = ConnectionId::new();
        let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let status = StreamEvent::from_monitor(&MonitorEvent::StatusChanged {
            id,
            from: HealthStatus::Unknown,
            to: HealthStatus::Down,
            at,
        });
        assert_eq!(
            serde_json::to_value(&status).unwrap(),
            serde_json::json!({
                "type": "status_changed",
                "id": id.to_string(),
                "from": "unknown",
                "to": "down",
                "at": "2023-11-14T22:13:20Z",
            })
        );
        let failed = StreamEvent::from_monitor(&MonitorEvent::Checked {
            id,
            status: HealthStatus::Degraded,
            latency_ms: 5_001,
            error_kind: Some(FailureKind::Timeout),
            at,
        });
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({
                "type": "checked",
                "id": id.to_string(),
                "status": "degraded",
                "latency_ms": 5_001,
                "error_kind": "timeout",
                "at": "2023-11-14T22:13:20Z",
            })
        );
        let passed = StreamEvent::from_monitor(&MonitorEvent::Checked {
            id,
            status: HealthStatus::Healthy,
            latency_ms: 3,
            error_kind: None,
            at,
        });
        assert_eq!(
            serde_json::to_value(&passed).unwrap(),
            serde_json::json!({
                "type": "checked",
                "id": id.to_string(),
                "status": "healthy",
                "latency_ms": 3,
                "error_kind": null,
                "at": "2023-11-14T22:13:20Z",
            })
        );
        let changed = StreamEvent::from_monitor(&MonitorEvent::ConnectionChanged { id });
        assert_eq!(
            serde_json::to_value(&changed).unwrap(),
            serde_json::json!({"type": "connection_changed", "id": id.to_string()})
        );
        let deleted = StreamEvent::from_monitor(&MonitorEvent::ConnectionDeleted { id });
        assert_eq!(
            serde_json::to_value(&deleted).unwrap(),
            serde_json::json!({"type": "connection_deleted", "id": id.to_string()})
        );
        assert_eq!(
            serde_json::to_value(StreamEvent::Resync).unwrap(),
            serde_json::json!({"type": "resync"})
        );
        for status in HealthStatus::ALL {
            assert_eq!(
                serde_json::to_value(StreamStatus::from(*status)).unwrap(),
                status.as_str()
            );
        }
    }
}
