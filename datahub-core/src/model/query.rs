//! What a list asks for and what it answers: the connection list's filters and order
//! ([`ListQuery`], [`SortKey`]), the audit log's filter ([`AuditQuery`]), which connections a
//! caller may view ([`Visibility`]), and one [`Page`] of results with the total.

use time::OffsetDateTime;

use crate::model::enums::{Engine, HealthStatus};
use crate::model::fields::Tag;
use crate::{TeamId, UserId};

/// The most rows one page of a list may hold.
pub const MAX_PER_PAGE: u32 = 200;

/// What a list may be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// By name (default), ascending.
    #[default]
    Name,
    /// By last change, newest first.
    Updated,
    /// By health status, worst first (down, degraded, unknown, healthy), then by name.
    Status,
    /// By the last check's time, most recent first; never checked last; then by name.
    Checked,
    /// By the last successful check's latency, slowest first; none yet last; then by name.
    Latency,
}

impl SortKey {
    /// Whether this order reads the health summary.
    pub fn reads_health(self) -> bool {
        matches!(self, Self::Status | Self::Checked | Self::Latency)
    }
}

/// A validated list request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Case-insensitive substring of name, description, host or any tag. Default: none.
    pub search: Option<String>,
    /// Only connections carrying this tag.
    pub tag: Option<Tag>,
    /// Only connections with this health status.
    pub status: Option<HealthStatus>,
    /// Only connections of this engine.
    pub engine: Option<Engine>,
    /// Only connections owned by this user.
    pub owner: Option<UserId>,
    /// Sort order. Default: by name.
    pub sort: SortKey,
    /// 1-based page number. Default: 1.
    pub page: u32,
    /// Rows per page, 1 to [`MAX_PER_PAGE`]. Default: 50.
    pub per_page: u32,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            search: None,
            tag: None,
            status: None,
            engine: None,
            owner: None,
            sort: SortKey::Name,
            page: 1,
            per_page: 50,
        }
    }
}

/// Which connections a caller may view, applied by the store in SQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every connection (admins).
    All,
    /// Connections the user owns or holds any grant on, directly or through one of the teams.
    Member {
        /// The caller.
        user: UserId,
        /// The teams the caller belongs to.
        teams: Vec<TeamId>,
    },
}

/// A filter over the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this actor.
    pub actor: Option<UserId>,
    /// Only this action (exact).
    pub action: Option<String>,
    /// Only this target (exact).
    pub target: Option<String>,
    /// Only entries written at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries written before this time.
    pub until: Option<OffsetDateTime>,
    /// 1-based page, newest first.
    pub page: u32,
    /// Rows per page, 1 to [`MAX_PER_PAGE`].
    pub per_page: u32,
}

/// One page of results with the total over all pages.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The rows of this page.
    pub items: Vec<T>,
    /// How many rows match in all.
    pub total: u64,
    /// This page's number, 1-based.
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
}
