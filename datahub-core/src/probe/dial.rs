//! The prober's seat for the one dialer: [`PolicyDial`] runs [`net::Connect`](crate::net::Connect)
//! (resolve once, check every address, connect to a checked one) under an admin [`Policy`].
//!
//! It only binds the policy to the dialer: it never resolves, checks or connects by itself.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::time::Instant;

use crate::model::Host;
use crate::net::{self, DialError, Dialed, Policy};
use crate::probe::Dial;

/// The connect step of a test: the one dialer with the target policy in force.
#[derive(Debug, Clone)]
pub struct PolicyDial {
    connect: Arc<dyn net::Connect>,
    policy: Arc<Policy>,
}

impl PolicyDial {
    /// The dialer `connect` (normally a [`net::Dialer`]) checking every address against `policy`.
    pub fn new(connect: Arc<dyn net::Connect>, policy: Arc<Policy>) -> Self {
        Self { connect, policy }
    }
}

#[async_trait]
impl Dial for PolicyDial {
    async fn dial(&self, host: &Host, port: u16, deadline: Instant) -> Result<Dialed, DialError> {
        self.connect
            .connect(host, port, &self.policy, deadline)
            .await
    }
}
