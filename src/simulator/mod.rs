//! A stateful stand-in for the part of Okta's management API the tool uses.
//! Kept apart from the product's core: it shares only `okta::wire` with the
//! client.
//!
//! INTERFACE STUB: being implemented.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The SSWS token it accepts; `None` accepts any non-empty token.
    pub token: Option<String>,
    /// Requests per window, per rate-limit bucket.
    pub rate_limit: u32,
    /// Length of a rate-limit window.
    pub window: Duration,
    /// Requests allowed in flight at once (org-wide).
    pub concurrency: usize,
    /// Added to every `/api/v1/` response.
    pub latency: Duration,
    /// Identity Engine mode: several sms factors per user are possible.
    pub oie: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            token: None,
            rate_limit: 600,
            window: Duration::from_secs(60),
            concurrency: 75,
            latency: Duration::ZERO,
            oie: false,
        }
    }
}

/// The org's users and factors, as loaded from an `org.json` file.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct OrgData {}

impl OrgData {
    pub fn load(path: &Path) -> anyhow::Result<OrgData> {
        let _ = path;
        unimplemented!()
    }
}

/// A running simulator.
pub struct Simulator {
    base_url: String,
}

impl Simulator {
    /// Binds `addr` (port 0 picks a free one) and serves on the current
    /// tokio runtime until [`Simulator::shutdown`] or the runtime ends.
    pub async fn start(addr: SocketAddr, cfg: SimConfig, org: OrgData) -> std::io::Result<Simulator> {
        let _ = (addr, cfg, org);
        unimplemented!()
    }

    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}
