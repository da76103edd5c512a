//! Where settings come from besides the command line: the `okta.yaml`
//! files Okta's SDKs read, the `OKTA_CLIENT_*` variables they honour, and
//! this tool's own file (`--config`) and `OKTA_PHONE_MIGRATE_*` variables.
//!
//! Precedence, highest first: flags, environment, `--config`, then
//! `./.okta.yaml`, `./okta.yaml`, then `~/.okta/okta.yaml` (the SDKs'
//! order: the project file overrides the home one, variables override
//! both). This module
//! only reads and parses; `config` decides and validates.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use crate::config::ConfigError;

/// Where a setting's value came from, for `config show` and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(String),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(name) => write!(f, "flag {name}"),
            Source::Env(name) => write!(f, "env {name}"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone)]
pub struct Found<T> {
    pub value: T,
    pub source: Source,
}

impl<T> Found<T> {
    pub fn new(value: T, source: Source) -> Found<T> {
        Found { value, source }
    }
}

/// A YAML scalar read as text: `50%`, `0.5` and `8` all fit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scalar, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Scopes as a YAML list or one string (space- or comma-separated, as the
/// SDKs' environment variables have them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(pub Vec<String>);

impl Scopes {
    pub fn parse(s: &str) -> Scopes {
        Scopes(
            s.split([' ', ',', '\t', '\n'])
                .map(str::trim)
                .filter(|x| !x.is_empty())
                .map(str::to_string)
                .collect(),
        )
    }
}

impl<'de> Deserialize<'de> for Scopes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Scopes, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scopes;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of scopes or a string of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scopes, E> {
                Ok(Scopes::parse(v))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Scopes, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<String>()? {
                    out.extend(Scopes::parse(&s).0);
                }
                Ok(Scopes(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `okta.client` in an `okta.yaml`, as Okta's SDKs define it. Keys the
/// tool does not use (`connectionTimeout`, `proxy`, `rateLimit`, ...) are
/// ignored, so an org's existing file works unchanged.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OktaClientYaml {
    #[serde(default)]
    pub org_url: Option<String>,
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub authorization_mode: Option<String>,
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub scopes: Option<Scopes>,
    /// PEM or JWK text, or a path to a file holding it.
    #[serde(default)]
    pub private_key: Option<String>,
    #[serde(default)]
    pub private_key_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct OktaYaml {
    #[serde(default)]
    okta: Option<OktaSection>,
}

#[derive(Debug, Default, Deserialize)]
struct OktaSection {
    #[serde(default)]
    client: Option<OktaClientYaml>,
}

/// One `okta.yaml` that was found and read.
#[derive(Debug, Clone)]
pub struct OktaFile {
    pub path: PathBuf,
    pub client: OktaClientYaml,
}

/// Where the SDKs look, lowest precedence first: `~/.okta/okta.yaml`
/// (all of them), then the project's file in the working directory, which
/// the Node and .NET SDKs call `okta.yaml` and the Go SDK and Okta CLI
/// `.okta.yaml`.
pub fn okta_yaml_paths(home: Option<&Path>, cwd: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(h) = home {
        v.push(h.join(".okta").join("okta.yaml"));
    }
    v.push(cwd.join("okta.yaml"));
    v.push(cwd.join(".okta.yaml"));
    v
}

/// Reads the `okta.yaml` files that exist, highest precedence first. A
/// file holding a token or an inline key must be private to its owner.
pub fn load_okta_files(paths: &[PathBuf]) -> Result<Vec<OktaFile>, ConfigError> {
    let mut out = Vec::new();
    for path in paths.iter().rev() {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ConfigError::new(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let parsed: OktaYaml = if text.trim().is_empty() {
            OktaYaml::default()
        } else {
            serde_saphyr::from_str(&text).map_err(|e| {
                ConfigError::new(format!(
                    "{} is not a valid okta.yaml: {}",
                    path.display(),
                    first_line(&e.to_string())
                ))
                .hint("the file must hold okta: client: orgUrl: ... as Okta's SDKs read it")
            })?
        };
        let client = parsed.okta.and_then(|o| o.client).unwrap_or_default();
        let inline_key = client
            .private_key
            .as_deref()
            .is_some_and(|k| k.contains("-----BEGIN") || k.trim_start().starts_with('{'));
        if client.token.is_some() || inline_key {
            check_private(path, "it holds a secret")?;
        }
        out.push(OktaFile {
            path: path.clone(),
            client,
        });
    }
    Ok(out)
}

/// The tool's own settings file (`--config`), YAML with camelCase keys.
/// Secrets are not accepted inline: only the paths of files holding them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolFile {
    pub org_url: Option<String>,
    pub authorization_mode: Option<String>,
    pub token_file: Option<PathBuf>,
    pub client_id: Option<String>,
    pub private_key: Option<PathBuf>,
    pub key_id: Option<String>,
    pub scopes: Option<Scopes>,
    pub ca_file: Option<PathBuf>,
    pub concurrency: Option<u16>,
    pub rate: Option<u32>,
    pub rate_share: Option<Scalar>,
    pub timeout: Option<u64>,
    pub default_region: Option<String>,
    pub factor_type: Option<String>,
    pub max_failures: Option<Scalar>,
    pub log_format: Option<String>,
    pub log_file: Option<PathBuf>,
    pub progress_interval: Option<u64>,
}

/// The `--config` file as read.
#[derive(Debug, Clone)]
pub struct LoadedTool {
    pub path: PathBuf,
    pub file: ToolFile,
}

/// Reads `--config`; relative paths inside it are taken from the file's
/// folder, so a cron job's working directory does not matter.
pub fn load_tool_file(path: &Path) -> Result<LoadedTool, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new(format!("cannot read --config {}: {e}", path.display())))?;
    let mut file: ToolFile = if text.trim().is_empty() {
        ToolFile::default()
    } else {
        serde_saphyr::from_str(&text).map_err(|e| {
            ConfigError::new(format!(
                "--config {}: {}",
                path.display(),
                first_line(&e.to_string())
            ))
            .hint("keys are camelCase (orgUrl, rateShare, maxFailures, ...); see the README's Configuration section")
        })?
    };
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    for p in [
        &mut file.token_file,
        &mut file.private_key,
        &mut file.ca_file,
        &mut file.log_file,
    ]
    .into_iter()
    .flatten()
    {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(LoadedTool {
        path: path.to_path_buf(),
        file,
    })
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().to_string()
}

/// A secret-bearing file readable by others is refused, with the fix.
#[cfg(unix)]
pub fn check_private(path: &Path, why: &str) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(format!("cannot read {}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(ConfigError::new(format!(
            "{} is readable by other users and {why}; it must be private",
            path.display()
        ))
        .hint(format!("chmod 600 {}", path.display())));
    }
    Ok(())
}

// Limitation: on Windows the permissions of secret files are not checked
// (ACLs differ); the README says so.
#[cfg(not(unix))]
pub fn check_private(_path: &Path, _why: &str) -> Result<(), ConfigError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sdk_okta_yaml_with_extra_keys_is_read() {
        let text = "okta:\n  client:\n    connectionTimeout: 30\n    orgUrl: https://acme.okta.com\n    authorizationMode: PrivateKey\n    clientId: 0oa1\n    scopes:\n      - okta.users.read\n      - okta.users.manage\n    privateKeyId: kid1\n    proxy:\n      port: 8080\n    rateLimit:\n      maxRetries: 4\n  testing:\n    disableHttpsCheck: false\n";
        let y: OktaYaml = serde_saphyr::from_str(text).unwrap();
        let c = y.okta.unwrap().client.unwrap();
        assert_eq!(c.org_url.as_deref(), Some("https://acme.okta.com"));
        assert_eq!(c.client_id.as_deref(), Some("0oa1"));
        assert_eq!(
            c.scopes.unwrap().0,
            vec!["okta.users.read", "okta.users.manage"]
        );
        assert_eq!(c.private_key_id.as_deref(), Some("kid1"));
    }

    #[test]
    fn an_inline_pem_block_scalar_is_kept_whole() {
        let text = "okta:\n  client:\n    privateKey: |\n      -----BEGIN PRIVATE KEY-----\n      AAAA\n      -----END PRIVATE KEY-----\n";
        let y: OktaYaml = serde_saphyr::from_str(text).unwrap();
        let k = y.okta.unwrap().client.unwrap().private_key.unwrap();
        assert!(
            k.starts_with("-----BEGIN PRIVATE KEY-----\nAAAA\n"),
            "{k:?}"
        );
    }

    #[test]
    fn the_tool_file_takes_shares_as_text_or_numbers_and_refuses_typos() {
        let t: ToolFile =
            serde_saphyr::from_str("rateShare: 25%\nmaxFailures: 10\nconcurrency: 4\n").unwrap();
        assert_eq!(t.rate_share, Some(Scalar("25%".into())));
        assert_eq!(t.max_failures, Some(Scalar("10".into())));
        assert_eq!(t.concurrency, Some(4));
        let t: ToolFile = serde_saphyr::from_str("rateShare: 0.25\n").unwrap();
        assert_eq!(t.rate_share, Some(Scalar("0.25".into())));
        assert!(serde_saphyr::from_str::<ToolFile>("rateshare: 25%\n").is_err());
        assert!(serde_saphyr::from_str::<ToolFile>("token: abc\n").is_err());
    }

    #[test]
    fn scopes_split_on_spaces_and_commas() {
        assert_eq!(
            Scopes::parse("okta.users.read, okta.users.manage").0,
            vec!["okta.users.read", "okta.users.manage"]
        );
    }
}
