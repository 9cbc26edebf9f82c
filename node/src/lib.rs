//! The yizhan node: everything a laptop or the station runs, minus the command line.
//!
//! The node moves signed changes between Automerge documents, SQLite and the network.
//! Identities, ids, the wire format, the signing rule and the sync state machine live in
//! `yizhan-protocol`, which is sans-IO; this crate gives them a store, threads and sockets.
//!
//! Its modules, by responsibility, from the bottom up. A module uses only modules of the
//! layers below its own (the `layering` test checks it on every build of the tests):
//!
//! | layer | modules | what they hold |
//! |---|---|---|
//! | 0 | [`model`], [`net`], [`discovery`], [`config`] | values (categories, status, channels, tags, times); QUIC endpoints and framing; mDNS; `config.toml` |
//! | 1 | [`records`] | the record model: how visits, tickets, households, the policy and notices are laid out in their documents, field by field |
//! | 2 | [`error`] | the errors of every operation |
//! | 3 | [`store`] | SQLite: schema and migrations, the connection, documents and their index rows |
//! | 4 | [`identity`] | who this node is (role, site, grids, certificate) |
//! | 5 | [`site`] | the site's trust data: roster, certificates, revocations, receipts |
//! | 6 | [`ingest`], [`local`] | the gate every received change passes: admission rules, the pipeline, quarantine, group commit; one change made and signed on this node, and the household a new record names |
//! | 7 | [`upgrade`] | linking an older store's visits and tickets to households, once |
//! | 8 | [`home`] | home directories, the key file, the pool, and [`Node`] itself |
//! | 9 | [`write`](mod@write), [`history`], [`notices`] | local writes; a record's history from its signed changes; notices: publishing, reading, listing, their report figures |
//! | 10 | [`query`], [`conflicts`], [`members`], [`purge`], [`quarantine`], [`report`], [`status`], [`exchange`] | what commands read and do with a node |
//! | 11 | [`sync`] | the sync engine: a `protocol::Session` driven with this node's store |
//! | 12 | [`link`] | one sync over a QUIC stream |
//! | 13 | [`daemon`] | `serve`: accepting members, dial loops with one back-off, discovery's findings |

pub mod config;
pub mod conflicts;
pub mod daemon;
pub mod discovery;
pub mod error;
pub mod exchange;
pub mod history;
pub mod home;
pub mod identity;
pub mod ingest;
pub mod link;
pub mod local;
pub mod members;
pub mod model;
pub mod net;
pub mod notices;
pub mod purge;
pub mod quarantine;
pub mod query;
pub mod records;
pub mod report;
pub mod site;
pub mod status;
pub mod store;
pub mod sync;
pub mod upgrade;
pub mod write;

pub use error::{InitError, OpenError, ReadError, Refusal, ResolveError, WriteError};
pub use home::{Home, InitConfig, InitSeed, Node};
pub use identity::{Identity, Role};
pub use ingest::{DocChanges, IngestReport, Rejection};
pub use query::{DueList, HouseholdFilter, TicketFilter, VerifyReport, VisitFilter};

#[cfg(test)]
mod layering {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// The layers of the table in the crate's documentation, bottom first.
    const LAYERS: &[&[&str]] = &[
        &["model", "net", "discovery", "config"],
        &["records"],
        &["error"],
        &["store"],
        &["identity"],
        &["site"],
        &["ingest", "local"],
        &["upgrade"],
        &["home"],
        &["write", "history", "notices"],
        &[
            "query",
            "conflicts",
            "members",
            "purge",
            "quarantine",
            "report",
            "status",
            "exchange",
        ],
        &["sync"],
        &["link"],
        &["daemon"],
    ];

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|l| l.contains(&module))
    }

    /// The crate's modules that `source` names (`crate::x`, `crate::{x, y}`), outside
    /// comments and tests.
    fn uses(source: &str) -> BTreeSet<String> {
        let code = source.split("#[cfg(test)]").next().unwrap_or_default();
        let code: String = code
            .lines()
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let first_segment = |s: &str| -> String {
            s.trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect()
        };
        let mut out = BTreeSet::new();
        let mut rest = code.as_str();
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let inner = &group[..group.find('}').unwrap_or(group.len())];
                out.extend(inner.split(',').map(first_segment));
            } else {
                out.insert(first_segment(rest));
            }
        }
        out.retain(|m| !m.is_empty() && m != "self");
        out
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_module_uses_only_the_layers_below_it() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut wrong = Vec::new();
        for file in files {
            let rel = file.strip_prefix(&src).unwrap();
            let module = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if module == "lib" {
                continue;
            }
            let Some(own) = layer_of(&module) else {
                wrong.push(format!("{module} is in no layer of lib.rs's table"));
                continue;
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for used in uses(&text) {
                if used == module {
                    continue;
                }
                match layer_of(&used) {
                    Some(l) if l < own => {}
                    Some(l) => wrong.push(format!(
                        "{} (layer {own}) uses {used} (layer {l})",
                        rel.display()
                    )),
                    None => wrong.push(format!("{} uses {used}, in no layer", rel.display())),
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "the layering is broken:\n{}",
            wrong.join("\n")
        );
    }

    #[test]
    fn the_check_sees_a_use_of_a_higher_layer() {
        let found = uses(
            "use crate::home::Node;\n// crate::daemon\nuse crate::{\n    link::x,\n    net,\n};\n\
             fn f() { crate::sync::x() }\n#[cfg(test)]\nuse crate::purge;",
        );
        let expected = ["home", "link", "net", "sync"].map(String::from);
        assert_eq!(found, BTreeSet::from(expected));
    }
}
