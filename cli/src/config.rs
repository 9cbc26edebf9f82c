//! `yizhan config` and the effective network settings of `serve` and `sync`.
//!
//! Each setting comes from the first of these that gives it:
//!
//! 1. a command-line flag (`serve --listen/--station/--no-discovery`, `sync HOST:PORT`);
//! 2. `<home>/config.toml`;
//! 3. for the station's address only: the one stored at join (`join --station`, else the
//!    address the token named);
//! 4. the default (listen `0.0.0.0:7365`, discovery on, no peers, every 30 s).
//!
//! With no station address from any of these, `serve` looks for the station on the local
//! network (discovery), and also does when the configured address does not answer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use serde_json::{Value, json};
use yizhan_node::Node;
use yizhan_node::config as file;
use yizhan_node::daemon::ServeConfig;

use crate::args::ServeArgs;
use crate::output::{Out, print_table, table};
use crate::tr;

/// Where a setting's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Default,
    File,
    Join,
    Flag,
}

impl Source {
    /// As `config --json` names it.
    fn as_str(self) -> &'static str {
        match self {
            Source::Default => "default",
            Source::File => "config file",
            Source::Join => "join",
            Source::Flag => "flag",
        }
    }

    /// For people, in this run's language.
    fn label(self) -> String {
        let key = match self {
            Source::Default => "default",
            Source::File => "file",
            Source::Join => "join",
            Source::Flag => "flag",
        };
        tr!("config-source", source = key)
    }
}

/// A value and where it comes from.
#[derive(Clone, Debug)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

fn pick<T>(flag: Option<T>, file: Option<T>, default: T) -> Setting<T> {
    match (flag, file) {
        (Some(value), _) => Setting {
            value,
            source: Source::Flag,
        },
        (None, Some(value)) => Setting {
            value,
            source: Source::File,
        },
        (None, None) => Setting {
            value: default,
            source: Source::Default,
        },
    }
}

/// The effective settings.
#[derive(Clone, Debug)]
pub struct Settings {
    pub file: PathBuf,
    pub listen: Setting<String>,
    pub station: Setting<Option<String>>,
    pub discovery: Setting<bool>,
    pub peers: Setting<Vec<String>>,
    pub sync_interval_secs: Setting<u64>,
}

/// The default listening address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:7365";

/// Merges the flags, `<home>/config.toml` and the station address stored at join. Every
/// address is checked; a bad one in the file names the file and the key.
pub fn settings(
    home: &Path,
    stored_station: Option<String>,
    flags: &ServeArgs,
) -> anyhow::Result<Settings> {
    let path = file::path_in(home);
    let cfg = file::load(home)?;
    let bad = |key: &str, value: &str| {
        tr!(
            "config-bad-value",
            path = &path.display(),
            key = key,
            value = format!("{value:?}")
        )
    };
    for (key, value) in [("listen", &cfg.listen), ("station", &cfg.station)] {
        if let Some(v) = value {
            parse_addr(v).with_context(|| bad(key, v))?;
        }
    }
    for p in cfg.peers.iter().flatten() {
        parse_addr(p).with_context(|| bad("peers", p))?;
    }
    let station = match (&flags.station, &cfg.station, stored_station) {
        (Some(s), _, _) => Setting {
            value: Some(s.clone()),
            source: Source::Flag,
        },
        (None, Some(s), _) => Setting {
            value: Some(s.clone()),
            source: Source::File,
        },
        (None, None, Some(s)) => Setting {
            value: Some(s),
            source: Source::Join,
        },
        (None, None, None) => Setting {
            value: None,
            source: Source::Default,
        },
    };
    Ok(Settings {
        listen: pick(flags.listen.clone(), cfg.listen, DEFAULT_LISTEN.to_string()),
        station,
        discovery: pick(flags.no_discovery.then_some(false), cfg.discovery, true),
        peers: pick(None, cfg.peers, Vec::new()),
        sync_interval_secs: pick(None, cfg.sync_interval_secs, 30),
        file: path,
    })
}

/// The settings of the node at `home` for `serve` (or `config`) with these flags.
pub fn for_node(home: &Path, node: &Node, flags: &ServeArgs) -> anyhow::Result<Settings> {
    settings(home, node.identity().station_addr.clone(), flags)
}

impl Settings {
    /// What `serve` runs with.
    pub fn serve_config(&self) -> anyhow::Result<ServeConfig> {
        let addr = |a: &str| parse_addr(a);
        let peers = self
            .peers
            .value
            .iter()
            .map(|p| addr(p))
            .collect::<anyhow::Result<Vec<SocketAddr>>>()?;
        Ok(ServeConfig {
            listen: addr(&self.listen.value)?,
            station: self.station.value.as_deref().map(addr).transpose()?,
            discovery: self.discovery.value,
            peers,
            resync: Duration::from_secs(self.sync_interval_secs.value),
            ..ServeConfig::default()
        })
    }

    fn rows(&self) -> Vec<(&'static str, Value, Source)> {
        vec![
            ("listen", json!(self.listen.value), self.listen.source),
            ("station", json!(self.station.value), self.station.source),
            (
                "discovery",
                json!(self.discovery.value),
                self.discovery.source,
            ),
            ("peers", json!(self.peers.value), self.peers.source),
            (
                "sync_interval_secs",
                json!(self.sync_interval_secs.value),
                self.sync_interval_secs.source,
            ),
        ]
    }
}

/// `yizhan config`: the effective settings and where each comes from.
pub fn show(home: &Path, node: Option<&Node>, out: &Out, flags: &ServeArgs) -> anyhow::Result<()> {
    let stored = node.and_then(|n| n.identity().station_addr.clone());
    let s = settings(home, stored, flags)?;
    let exists = s.file.exists();
    let mut value = json!({ "file": s.file.display().to_string(), "file_exists": exists });
    for (key, v, source) in s.rows() {
        value[key] = json!({ "value": v, "source": source.as_str() });
    }
    out.emit(&value, || {
        let header = [
            tr!("config-col-setting"),
            tr!("config-col-value"),
            tr!("config-col-from"),
        ];
        let mut t = table(&header.each_ref().map(String::as_str));
        for (key, v, source) in s.rows() {
            let shown = match &v {
                Value::Null => "-".to_string(),
                Value::String(s) => s.clone(),
                Value::Array(a) if a.is_empty() => "-".to_string(),
                Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                other => other.to_string(),
            };
            t.add_row(vec![key.to_string(), shown, source.label()]);
        }
        print_table(&t, "");
        let path = s.file.display();
        println!(
            "{}",
            if exists {
                tr!("config-file", path = &path)
            } else {
                tr!("config-file-missing", path = &path)
            }
        );
    })
}

/// The station `sync` talks to when no peer is given: config.toml's `station`, else the
/// address stored at join.
pub fn station_for_sync(node: &Node) -> anyhow::Result<SocketAddr> {
    let home = node.home_handle();
    let flags = ServeArgs {
        listen: None,
        station: None,
        no_discovery: false,
    };
    match for_node(home.dir(), node, &flags)?.station.value {
        Some(addr) => parse_addr(&addr),
        None => Err(anyhow!(tr!("sync-no-station"))),
    }
}

/// Checks a HOST:PORT address and resolves its host: an address that is not of that form
/// and a host name that does not resolve are told apart.
pub fn parse_addr(addr: &str) -> anyhow::Result<std::net::SocketAddr> {
    use yizhan_node::link::{self, DaemonError};
    link::resolve(addr).map_err(|e| match e {
        DaemonError::Unresolved(host) => {
            anyhow!(tr!("addr-unresolved", addr = addr, host = host))
        }
        _ => anyhow!(tr!("addr-not-host-port", addr = addr)),
    })
}
