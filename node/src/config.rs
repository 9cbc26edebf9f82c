//! The node's configuration file, `<home>/config.toml`.
//!
//! Every key is optional; a missing file is an empty configuration. Reading is strict: a
//! key this version does not know, or a value of the wrong type, is an error that names
//! the file, the key and the line, so a typo never silently changes nothing.
//!
//! ```toml
//! listen = "0.0.0.0:7365"        # where `serve` accepts syncs
//! station = "10.0.0.1:7365"      # where the station listens (overrides the address stored at join)
//! discovery = true               # find peers of this site on the local network (mDNS)
//! peers = ["10.0.0.7:7365"]      # more peers `serve` keeps syncing with
//! sync_interval_secs = 30        # `serve` syncs with each peer at least this often
//! lang = "zh"                    # the language of human output: "zh" or "en"
//! ```
//!
//! This module only reads the file; which value wins over which (command-line flags over
//! the file over what the store holds over defaults) is the command line's business.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file's name inside the home.
pub const FILE_NAME: &str = "config.toml";

/// The largest config file read (it is a handful of lines).
const MAX_BYTES: u64 = 64 * 1024;

/// The settings a config file holds. `None`: the file does not set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Where `serve` listens (`HOST:PORT`).
    pub listen: Option<String>,
    /// Where the station listens (`HOST:PORT`).
    pub station: Option<String>,
    /// Whether `serve` finds peers of this site on the local network.
    pub discovery: Option<bool>,
    /// More peers (`HOST:PORT`) that `serve` syncs with.
    pub peers: Option<Vec<String>>,
    /// How often `serve` syncs with each peer, at least (seconds, 1 or more).
    pub sync_interval_secs: Option<u64>,
    /// The language of human output: `zh` or `en` (the command line checks the value).
    pub lang: Option<String>,
}

/// Why the config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is too large to be a config file.
    #[error("the config file {path} is larger than {MAX_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid TOML, or holds an unknown key or a wrong value.
    #[error("the config file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and where, on one line.
        message: String,
    },
}

/// The config file of the home at `home`.
pub fn path_in(home: &Path) -> PathBuf {
    home.join(FILE_NAME)
}

/// Reads `<home>/config.toml`; a missing file is an empty configuration.
pub fn load(home: &Path) -> Result<FileConfig, ConfigError> {
    load_file(&path_in(home))
}

/// Reads one config file; a missing file is an empty configuration.
pub fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    use std::io::Read;
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > MAX_BYTES {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: "it is not UTF-8 text".into(),
    })?;
    parse(&text).map_err(|message| ConfigError::Invalid {
        path: path.to_path_buf(),
        message,
    })
}

/// Parses a config file's text. The error is one line: what is wrong, and the line.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let config: FileConfig = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().replace(['\n', '\r'], " ");
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                // Name the key of that line too, when it has one.
                let key = text
                    .lines()
                    .nth(line - 1)
                    .and_then(|l| l.split_once('=').map(|(k, _)| k).or(Some(l)))
                    .map(|k| {
                        k.trim()
                            .trim_start_matches('[')
                            .trim_end_matches(']')
                            .trim()
                    })
                    .filter(|k| !k.is_empty() && !message.contains(&format!("`{k}`")));
                match key {
                    Some(key) => format!("{key}: {message} (line {line})"),
                    None => format!("{message} (line {line})"),
                }
            }
            None => message,
        }
    })?;
    if config.sync_interval_secs == Some(0) {
        return Err("sync_interval_secs must be at least 1".into());
    }
    if let Some(lang) = &config.lang
        && !matches!(lang.as_str(), "zh" | "en")
    {
        return Err(format!("lang must be \"zh\" or \"en\", not {lang:?}"));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read() {
        let c = parse(
            "listen = \"0.0.0.0:7000\"\nstation = \"10.0.0.1:7365\"\ndiscovery = false\n\
             peers = [\"10.0.0.7:7365\"]\nsync_interval_secs = 5\n",
        )
        .unwrap();
        assert_eq!(c.listen.as_deref(), Some("0.0.0.0:7000"));
        assert_eq!(c.station.as_deref(), Some("10.0.0.1:7365"));
        assert_eq!(c.discovery, Some(false));
        assert_eq!(c.peers, Some(vec!["10.0.0.7:7365".to_string()]));
        assert_eq!(c.sync_interval_secs, Some(5));
    }

    #[test]
    fn an_empty_file_sets_nothing() {
        assert_eq!(parse("").unwrap(), FileConfig::default());
        assert_eq!(parse("# only a comment\n").unwrap(), FileConfig::default());
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let e = parse("listen = \"0.0.0.0:1\"\nstaton = \"x:1\"\n").unwrap_err();
        assert!(e.contains("staton"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(!e.contains('\n'), "{e}");
    }

    #[test]
    fn wrong_types_and_bad_syntax_are_refused_on_one_line() {
        for text in [
            "discovery = \"yes\"",
            "peers = \"a:1\"",
            "sync_interval_secs = -1",
            "listen = ",
            "[listen]\nx = 1",
        ] {
            let e = parse(text).unwrap_err();
            assert!(!e.contains('\n'), "{text:?}: {e}");
            let key = text
                .split([' ', ']'])
                .next()
                .unwrap()
                .trim_start_matches('[');
            assert!(e.contains(key), "{text:?}: {e}");
            assert!(e.contains("line 1"), "{text:?}: {e}");
        }
        assert!(parse("sync_interval_secs = 0").is_err());
    }

    #[test]
    fn a_missing_file_is_empty_and_a_bad_one_names_its_path() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), FileConfig::default());
        std::fs::write(path_in(dir.path()), "bogus = 1\n").unwrap();
        let e = load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("config.toml") && e.contains("bogus"), "{e}");
    }
}
