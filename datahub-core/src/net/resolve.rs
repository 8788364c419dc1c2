//! Name resolution behind a trait, so tests never touch the machine's DNS.
//!
//! This module turns a host name into IP addresses and nothing else: it never checks a policy and
//! never opens a socket. IP literals never reach a [`Resolver`]; the dialer handles them itself.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;

/// Why a name did not resolve.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResolveError {
    /// The name does not exist, or has no address (NXDOMAIN, NODATA, an empty answer).
    #[error("host name not found")]
    NotFound,
    /// The resolver gave no answer in time.
    #[error("host name lookup timed out")]
    Timeout,
    /// The lookup itself failed (no resolver reachable, a temporary failure, …).
    #[error("host name lookup failed")]
    Failed(#[source] io::Error),
}

/// Resolves a host name to IP addresses.
///
/// Implementations return the addresses in the order they should be tried, may return
/// duplicates (the dialer removes them) and must not return an empty list on success (return
/// [`ResolveError::NotFound`]). The dialer bounds every call with its deadline, so an
/// implementation may ignore time, but one that blocks a thread should bound itself too.
#[async_trait]
pub trait Resolver: fmt::Debug + Send + Sync {
    /// The addresses of `host` (a validated DNS name, never an IP literal). `port` is passed for
    /// resolvers that want it (e.g. `getaddrinfo`); the answer is addresses only.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError>;
}

/// The operating system's resolver (`getaddrinfo` through [`tokio::net::lookup_host`]).
///
/// Names under the special-use `.invalid` top-level domain (RFC 6761) are answered
/// [`ResolveError::NotFound`] without asking the system.
///
/// `getaddrinfo` blocks a thread of tokio's blocking pool; when the timeout expires the caller
/// gets [`ResolveError::Timeout`] at once, but that thread finishes the lookup in the background
/// (the system resolver has its own timeout; nothing can cancel it).
#[derive(Debug, Clone)]
pub struct SystemResolver {
    timeout: Duration,
}

impl SystemResolver {
    /// The default lookup timeout: 5 s (the default and ceiling of a whole test).
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

    /// A system resolver with its own lookup timeout. Default: [`Self::DEFAULT_TIMEOUT`].
    pub fn with_timeout(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl Default for SystemResolver {
    fn default() -> Self {
        Self::with_timeout(Self::DEFAULT_TIMEOUT)
    }
}

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        let lower = host.to_ascii_lowercase();
        if lower == "invalid" || lower.ends_with(".invalid") {
            return Err(ResolveError::NotFound);
        }
        let lookup = tokio::net::lookup_host((host, port));
        let addrs = match tokio::time::timeout(self.timeout, lookup).await {
            Err(_) => return Err(ResolveError::Timeout),
            Ok(Err(e)) => return Err(classify(e)),
            Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect::<Vec<_>>(),
        };
        if addrs.is_empty() {
            return Err(ResolveError::NotFound);
        }
        Ok(addrs)
    }
}

/// `getaddrinfo` errors arrive as `io::Error`s with only a message; `EAI_NONAME` and `EAI_NODATA`
/// are told apart from transient failures by that message (std gives no code).
fn classify(e: io::Error) -> ResolveError {
    let text = e.to_string().to_ascii_lowercase();
    let not_found = [
        "name or service not known",
        "no address associated",
        "nodename nor servname",
        "no such host",
    ];
    if not_found.iter().any(|n| text.contains(n)) {
        ResolveError::NotFound
    } else {
        ResolveError::Failed(e)
    }
}

/// A fixed table of names, for tests: each name answers its addresses or fails; every other name
/// is [`ResolveError::NotFound`].
///
/// Names are matched case-insensitively. It never touches the network.
#[derive(Debug, Clone, Default)]
pub struct StaticResolver {
    entries: HashMap<String, Entry>,
}

#[derive(Debug, Clone)]
enum Entry {
    Addrs(Vec<IpAddr>),
    Fail(StaticFailure),
    Hang,
}

/// How a [`StaticResolver`] entry fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StaticFailure {
    /// [`ResolveError::NotFound`].
    NotFound,
    /// [`ResolveError::Failed`] (a temporary failure).
    Failed,
}

impl StaticResolver {
    /// An empty table: every name is not found.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name` answering `addrs`, in that order (an empty list answers `NotFound`).
    pub fn with(mut self, name: &str, addrs: &[IpAddr]) -> Self {
        self.entries
            .insert(name.to_ascii_lowercase(), Entry::Addrs(addrs.to_vec()));
        self
    }

    /// Adds `name` failing with `failure`.
    pub fn with_failure(mut self, name: &str, failure: StaticFailure) -> Self {
        self.entries
            .insert(name.to_ascii_lowercase(), Entry::Fail(failure));
        self
    }

    /// Adds `name` never answering, for resolve-timeout tests.
    pub fn with_hang(mut self, name: &str) -> Self {
        self.entries.insert(name.to_ascii_lowercase(), Entry::Hang);
        self
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, _port: u16) -> Result<Vec<IpAddr>, ResolveError> {
        match self.entries.get(&host.to_ascii_lowercase()) {
            None => Err(ResolveError::NotFound),
            Some(Entry::Addrs(a)) if a.is_empty() => Err(ResolveError::NotFound),
            Some(Entry::Addrs(a)) => Ok(a.clone()),
            Some(Entry::Fail(StaticFailure::NotFound)) => Err(ResolveError::NotFound),
            Some(Entry::Fail(StaticFailure::Failed)) => Err(ResolveError::Failed(
                io::Error::other("temporary failure in name resolution"),
            )),
            Some(Entry::Hang) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn static_resolver_answers_only_its_table() {
        let r = StaticResolver::new()
            .with("db.test", &["10.0.0.1".parse().unwrap()])
            .with_failure("down.test", StaticFailure::Failed);
        assert_eq!(
            r.resolve("DB.test", 5432).await.unwrap(),
            vec!["10.0.0.1".parse::<IpAddr>().unwrap()]
        );
        assert!(matches!(
            r.resolve("db.invalid", 5432).await,
            Err(ResolveError::NotFound)
        ));
        assert!(matches!(
            r.resolve("down.test", 5432).await,
            Err(ResolveError::Failed(_))
        ));
    }

    #[tokio::test]
    async fn system_resolver_never_asks_about_invalid() {
        let r = SystemResolver::default();
        assert!(matches!(
            r.resolve("db.invalid", 5432).await,
            Err(ResolveError::NotFound)
        ));
        assert!(matches!(
            r.resolve("INVALID", 5432).await,
            Err(ResolveError::NotFound)
        ));
    }

    #[test]
    fn getaddrinfo_messages_are_classified() {
        let nx =
            io::Error::other("failed to lookup address information: Name or service not known");
        assert!(matches!(classify(nx), ResolveError::NotFound));
        let tmp = io::Error::other(
            "failed to lookup address information: Temporary failure in name resolution",
        );
        assert!(matches!(classify(tmp), ResolveError::Failed(_)));
    }
}
