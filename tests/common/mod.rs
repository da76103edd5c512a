//! Shared test harness: an in-process simulator on 127.0.0.1:0, the real
//! binary run in a temp dir with a scrubbed environment, and report reading.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use okta_phone_migrate::simulator::{
    Fault, LoggedRequest, OrgData, SentOtp, SimConfig, SimSettings, Simulator, UserSnapshot,
};
use serde_json::{Value, json};

pub const TOKEN: &str = "test-token-not-secret";

/// A simulator running on its own runtime for the length of a test.
pub struct Sim {
    rt: tokio::runtime::Runtime,
    sim: Option<Simulator>,
}

impl Sim {
    pub fn start(cfg: SimConfig, org: Value) -> Sim {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let org: OrgData = serde_json::from_value(org).expect("org json");
        let cfg = SimConfig {
            token: Some(TOKEN.to_string()),
            ..cfg
        };
        let sim = rt
            .block_on(Simulator::start(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                cfg,
                org,
            ))
            .expect("simulator starts");
        Sim { rt, sim: Some(sim) }
    }

    pub fn with_users(users: Vec<Value>) -> Sim {
        Sim::start(SimConfig::default(), json!({ "users": users }))
    }

    fn sim(&self) -> &Simulator {
        self.sim.as_ref().expect("running")
    }

    pub fn url(&self) -> String {
        self.sim().base_url().to_string()
    }

    pub fn user(&self, id: &str) -> UserSnapshot {
        self.sim().user(id).expect("user exists")
    }

    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.sim().requests()
    }

    pub fn clear_requests(&self) {
        self.sim().clear_requests()
    }

    pub fn add_fault(&self, f: Fault) {
        self.sim().add_fault(f)
    }

    pub fn clear_faults(&self) {
        self.sim().clear_faults()
    }

    /// Capture of headers and bodies, and the simulator's clock skew.
    pub fn set_settings(&self, s: SimSettings) {
        self.sim().set_settings(s)
    }

    pub fn sent_otps(&self) -> Vec<SentOtp> {
        self.sim().sent_otps()
    }

    /// Writes (non-GET) requests under /api/v1/ the simulator received.
    pub fn writes(&self) -> Vec<LoggedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET" && r.path.starts_with("/api/v1/"))
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(sim) = self.sim.take() {
            self.rt.block_on(sim.shutdown());
        }
    }
}

/// A user with phone factors `(type, number, status)`.
pub fn user(id: &str, login: &str, factors: &[(&str, &str, &str)]) -> Value {
    let factors: Vec<Value> = factors
        .iter()
        .map(|(t, n, s)| json!({"factorType": t, "provider": "OKTA", "status": s, "profile": {"phoneNumber": n}}))
        .collect();
    json!({
        "id": id,
        "status": "ACTIVE",
        "profile": {"login": login, "email": login, "firstName": "Test", "lastName": "User"},
        "factors": factors,
    })
}

/// A temp dir holding the input, and the binary run against an org.
pub struct Run {
    pub dir: tempfile::TempDir,
}

impl Run {
    pub fn new() -> Run {
        Run {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write input");
        p
    }

    /// The binary with a scrubbed environment: only PATH, HOME and the token.
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_okta-phone-migrate"));
        c.current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", self.dir.path())
            .env("OKTA_CLIENT_TOKEN", TOKEN)
            .stdin(std::process::Stdio::null());
        c
    }

    /// `apply` (or `plan`) with the usual flags and extra ones.
    pub fn tool(&self, command: &str, sim: &Sim, input: &Path, extra: &[&str]) -> Output {
        self.tool_to("report.csv", command, sim, input, extra)
    }

    /// Same, with the report at `report` in the temp dir.
    pub fn tool_to(
        &self,
        report: &str,
        command: &str,
        sim: &Sim,
        input: &Path,
        extra: &[&str],
    ) -> Output {
        let mut c = self.cmd();
        c.arg(command)
            .arg("--org-url")
            .arg(sim.url())
            .arg("--input")
            .arg(input)
            .arg("--report")
            .arg(self.path(report))
            .args(["--default-region", "US"])
            .args(extra);
        c.output().expect("binary runs")
    }

    pub fn report(&self) -> Vec<HashMap<String, String>> {
        read_report(&self.path("report.csv"))
    }
}

pub fn read_report(path: &Path) -> Vec<HashMap<String, String>> {
    let mut rdr = csv::Reader::from_path(path).expect("report exists");
    let headers = rdr.headers().expect("header").clone();
    let mut rows: Vec<HashMap<String, String>> = rdr
        .records()
        .map(|r| {
            let r = r.expect("record");
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect();
    rows.sort_by_key(|r| r["row"].parse::<u64>().unwrap_or(0));
    rows
}

/// The report row for a data row number.
pub fn row(report: &[HashMap<String, String>], n: u64) -> &HashMap<String, String> {
    report
        .iter()
        .find(|r| r["row"] == n.to_string())
        .unwrap_or_else(|| panic!("no report line for row {n}: {report:#?}"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}
