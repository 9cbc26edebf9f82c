//! The error line for people, in this run's language.
//!
//! The node's errors are `thiserror` enums whose English `Display` serves logs and library
//! users. For the one line `main` prints, each error in the chain that the catalogue knows
//! (the ones people meet: a home not set up, a wrong passphrase, an id that matches nothing,
//! a field refused, a grid that is not theirs...) is told from `errors.ftl`, with the values
//! it carries; an error the catalogue does not know keeps its English text.

use std::error::Error;

use yizhan_node::conflicts::ConflictError;
use yizhan_node::error::StoreOpenError;
use yizhan_node::link::DaemonError;
use yizhan_node::members::SiteError;
use yizhan_node::model::{BadTime, TimeRange, UnknownValue};
use yizhan_node::net::NetError;
use yizhan_node::quarantine::QuarantineError;
use yizhan_node::records::FieldError;
use yizhan_node::sync::SyncError;
use yizhan_node::{InitError, OpenError, Refusal, ResolveError};

use crate::output::label;
use crate::tr;

/// The error and its causes on one line, each told once. A wrapper that only passes its
/// source's text on (`#[error(transparent)]`) is skipped, and a cause whose text its
/// parent already quoted adds nothing.
pub fn one_line(e: &anyhow::Error) -> String {
    let chain: Vec<&(dyn Error + 'static)> = e.chain().collect();
    let mut english = String::new();
    let mut parts: Vec<String> = Vec::new();
    for (i, cause) in chain.iter().enumerate() {
        let text = cause.to_string();
        // A transparent wrapper: the next cause says the same, in its own words.
        if chain
            .get(i + 1)
            .is_some_and(|next| next.to_string() == text)
        {
            continue;
        }
        if english.contains(&text) {
            continue;
        }
        english.push_str(&text);
        english.push_str(": ");
        let told = known(*cause).unwrap_or(text);
        if !parts.iter().any(|p| p.contains(&told)) {
            parts.push(told);
        }
    }
    parts.join(separator())
}

/// A field as the error names it: its Chinese label in a Chinese run; in English the name
/// the command line, the files and JSON use (`visited_at`).
fn field_name(field: &str) -> String {
    if crate::i18n::zh() {
        label(field)
    } else {
        field.to_string()
    }
}

/// Between an error and its cause: `: `, or the full-width `：` in Chinese.
fn separator() -> &'static str {
    if crate::i18n::zh() { "：" } else { ": " }
}

/// One error for people: the catalogue's words when it knows it, else its own text.
pub fn tell(e: &(dyn Error + 'static)) -> String {
    known(e).unwrap_or_else(|| e.to_string())
}

/// The error a transparent wrapper stands for. `#[error(transparent)]` passes `source()`
/// through to its inner error's source, so the inner error itself never appears in the
/// chain: it is reached here.
fn unwrap<'a>(e: &'a (dyn Error + 'static)) -> &'a (dyn Error + 'static) {
    use yizhan_node::WriteError;
    let inner: Option<&(dyn Error + 'static)> = if let Some(w) = e.downcast_ref::<WriteError>() {
        match w {
            WriteError::Field(f) => Some(f),
            WriteError::NotAllowed(r) => Some(r),
            _ => None,
        }
    } else if let Some(o) = e.downcast_ref::<OpenError>() {
        match o {
            OpenError::Store(s) => Some(s),
            _ => None,
        }
    } else if let Some(i) = e.downcast_ref::<InitError>() {
        match i {
            InitError::Store(s) => Some(s),
            _ => None,
        }
    } else if let Some(d) = e.downcast_ref::<DaemonError>() {
        match d {
            DaemonError::Open(o) => Some(o),
            DaemonError::Sync(s) => Some(s),
            DaemonError::Read(r) => Some(r),
            DaemonError::Write(w) => Some(w),
            DaemonError::Net(n) => Some(n),
            _ => None,
        }
    } else if let Some(s) = e.downcast_ref::<SyncError>() {
        match s {
            SyncError::Write(w) => Some(w),
            SyncError::Read(r) => Some(r),
            _ => None,
        }
    } else if let Some(q) = e.downcast_ref::<QuarantineError>() {
        match q {
            QuarantineError::Resolve(r) => Some(r),
            QuarantineError::Write(w) => Some(w),
            QuarantineError::Read(r) => Some(r),
            _ => None,
        }
    } else if let Some(c) = e.downcast_ref::<ConflictError>() {
        match c {
            ConflictError::Value(v) => Some(v),
            ConflictError::Time(t) => Some(t),
            ConflictError::Field(f) => Some(f),
            ConflictError::Device(d) => Some(d),
            ConflictError::Write(w) => Some(w),
            ConflictError::Read(r) => Some(r),
            _ => None,
        }
    } else if let Some(r) = e.downcast_ref::<yizhan_node::exchange::RowError>() {
        use yizhan_node::exchange::RowError;
        match r {
            RowError::Field(f) => Some(f),
            RowError::Value(v) => Some(v),
            RowError::Time(t) => Some(t),
            RowError::Text(_) => None,
        }
    } else if let Some(SiteError::Write(w)) = e.downcast_ref::<SiteError>() {
        Some(w)
    } else {
        None
    };
    inner.map_or(e, unwrap)
}

/// The catalogue's words for `e`, when it knows them.
fn known(e: &(dyn Error + 'static)) -> Option<String> {
    let e = unwrap(e);
    if let Some(e) = e.downcast_ref::<OpenError>() {
        return match e {
            OpenError::NotInitialised(home) => Some(tr!(
                "err-not-initialised",
                home = home.display().to_string()
            )),
            OpenError::NeedsPassphrase(home) => Some(tr!(
                "err-needs-passphrase",
                home = home.display().to_string()
            )),
            OpenError::NotEncrypted(home) => {
                Some(tr!("err-not-encrypted", home = home.display().to_string()))
            }
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<StoreOpenError>() {
        return match e {
            StoreOpenError::WrongPassphrase => Some(tr!("err-wrong-passphrase")),
            StoreOpenError::EmptyPassphrase => Some(tr!("err-empty-passphrase")),
            StoreOpenError::NotADatabase(path) | StoreOpenError::Foreign(path) => {
                Some(tr!("err-not-a-store", path = path.as_str()))
            }
            StoreOpenError::TooNew(version) => Some(tr!("err-store-too-new", version = *version)),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<InitError>() {
        return match e {
            InitError::AlreadyInitialised(home) => Some(tr!(
                "err-already-initialised",
                home = home.display().to_string()
            )),
            InitError::EmptyName => Some(tr!("err-empty-name")),
            InitError::EmptyPassphrase => Some(tr!("err-empty-passphrase")),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<ResolveError>() {
        return match e {
            ResolveError::TooShort(given) => Some(tr!("err-prefix-short", given = given.as_str())),
            ResolveError::Malformed(given, kind) => Some(tr!(
                "err-id-malformed",
                given = given.as_str(),
                kind = kind_name(kind)
            )),
            ResolveError::NotFound(given, kind) => Some(tr!(
                "err-id-none",
                given = given.as_str(),
                kind = kind_name(kind)
            )),
            ResolveError::Ambiguous(given, count, kind) => Some(tr!(
                "err-id-ambiguous",
                given = given.as_str(),
                count = *count,
                kind = kind_name(kind)
            )),
            ResolveError::Sqlite(_) => None,
        };
    }
    if let Some(e) = e.downcast_ref::<Refusal>() {
        return refusal(e);
    }
    if let Some(e) = e.downcast_ref::<FieldError>() {
        return Some(match e {
            FieldError::Empty(field) => tr!("err-field-empty", field = field_name(field)),
            FieldError::TooLong(field, max) => {
                tr!("err-field-too-long", field = field_name(field), max = *max)
            }
            FieldError::TooMany(what, max) => {
                tr!("err-field-too-many", field = field_name(what), max = *max)
            }
            FieldError::NothingToChange => tr!("err-nothing-to-change"),
            FieldError::Time(field, range) => {
                format!("{}{}{}", field_name(field), separator(), time_range(range))
            }
            FieldError::Multiline => tr!("err-resident-multiline"),
            FieldError::MultilineGrid => tr!("notice-grid-multiline"),
        });
    }
    if let Some(e) = e.downcast_ref::<TimeRange>() {
        return Some(time_range(e));
    }
    if let Some(BadTime(given)) = e.downcast_ref::<BadTime>() {
        return Some(tr!("err-bad-time", given = given.as_str()));
    }
    if let Some(e) = e.downcast_ref::<UnknownValue>() {
        return Some(tr!(
            "err-unknown-value",
            what = field_name(e.what),
            given = e.given.as_str(),
            expected = e.expected.as_str()
        ));
    }
    if let Some(e) = e.downcast_ref::<SiteError>() {
        return match e {
            SiteError::NotStation(what) => Some(tr!(
                "err-station-only",
                action =
                    crate::i18n::message_or(&format!("action-{}", what.replace(' ', "-")), what)
            )),
            SiteError::NoGrid => Some(tr!("err-volunteer-needs-grid")),
            SiteError::EmptyName => Some(tr!("err-empty-name")),
            SiteError::OtherSite(site) => Some(tr!("err-other-site", site = site.to_string())),
            SiteError::Revoked(device) => Some(tr!("err-revoked", device = device.to_string())),
            SiteError::ExpiresDays(days) => Some(tr!(
                "err-expires-days",
                given = *days,
                max = yizhan_node::members::MAX_EXPIRES_DAYS
            )),
            SiteError::RevokeSelf => Some(tr!("err-revoke-self")),
            SiteError::Token(e) => Some(tr!("token-invalid", reason = e.to_string())),
            SiteError::OlderToken { given, held } => Some(tr!(
                "err-older-token",
                given = crate::output::when(Some(given)),
                held = crate::output::when(Some(held))
            )),
            _ => None,
        };
    }
    if let Some(SyncError::NotMember) = e.downcast_ref::<SyncError>() {
        return Some(tr!("err-not-member"));
    }
    if let Some(QuarantineError::NotStation) = e.downcast_ref::<QuarantineError>() {
        return Some(tr!("err-quarantine-station-only"));
    }
    if let Some(DaemonError::NoStation) = e.downcast_ref::<DaemonError>() {
        return Some(tr!("err-no-station-address"));
    }
    if let Some(e) = e.downcast_ref::<NetError>() {
        return match e {
            NetError::Timeout { addr, after } => Some(tr!(
                "err-handshake-timeout",
                addr = addr.to_string(),
                secs = after.as_secs()
            )),
            NetError::Handshake { addr, source } => Some(tr!(
                "err-handshake-failed",
                addr = addr.to_string(),
                reason = source.to_string()
            )),
            NetError::Connect { addr, source } => Some(tr!(
                "err-connect-failed",
                addr = addr.to_string(),
                reason = source.to_string()
            )),
            _ => None,
        };
    }
    if let Some(e) = e.downcast_ref::<ConflictError>() {
        return match e {
            ConflictError::UnknownField {
                kind,
                field,
                fields,
            } => Some(tr!(
                "err-no-such-field",
                kind = kind_name(kind),
                field = field.as_str(),
                fields = fields
                    .split(", ")
                    .map(|f| if crate::i18n::zh() {
                        format!("{f} {}", label(f))
                    } else {
                        f.to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            ConflictError::NoConflict { kind, id, field } => Some(tr!(
                "err-no-conflict",
                kind = kind_name(kind),
                id = id.to_string(),
                field = field_name(field)
            )),
            _ => None,
        };
    }
    if let Some(yizhan_node::config::ConfigError::Invalid { path, message }) =
        e.downcast_ref::<yizhan_node::config::ConfigError>()
    {
        return Some(tr!(
            "err-config-invalid",
            path = path.display().to_string(),
            reason = message.as_str()
        ));
    }
    None
}

fn refusal(e: &Refusal) -> Option<String> {
    Some(match e {
        Refusal::NotOwnGrid { grid, own } => {
            tr!("err-not-own-grid", grid = grid.as_str(), own = own.as_str())
        }
        Refusal::StationNeedsGrid => tr!("err-station-needs-grid"),
        Refusal::NotJoined => tr!("err-households-need-site"),
        Refusal::HouseholdExists { grid, address, id } => tr!(
            "err-household-exists",
            grid = grid.as_str(),
            address = address.as_str(),
            id = id.as_str()
        ),
        Refusal::HouseholdMovedAway { grid, address, id } => tr!(
            "err-household-moved",
            grid = grid.as_str(),
            address = address.as_str(),
            id = id.as_str()
        ),
        Refusal::HouseholdInOtherGrid { id, grid, given } => tr!(
            "err-household-other-grid",
            id = id.as_str(),
            grid = grid.as_str(),
            given = given.as_str()
        ),
        Refusal::MalformedHousehold => tr!("err-household-malformed"),
        Refusal::HouseholdAmbiguous(given) => {
            tr!("err-household-ambiguous", given = given.as_str())
        }
        Refusal::NotFinished(status) => {
            tr!("err-not-finished", status = crate::output::word(status))
        }
        Refusal::PolicyStationOnly => tr!("err-policy-station-only"),
        Refusal::NoticeStationOnly => tr!("notice-station-only"),
        Refusal::PolicyDays(max) => tr!("err-policy-days", max = *max),
        Refusal::NotVisitAuthor => tr!("err-not-visit-author"),
        Refusal::UnknownTicket(id) => tr!("err-unknown-ticket", id = id.as_str()),
        Refusal::NotA(id, kind) => tr!("err-not-a", id = id.as_str(), kind = kind_name(kind)),
        Refusal::NoRecord(id) => tr!("err-no-record", id = id.as_str()),
        Refusal::NotSettled(field) => tr!("err-not-settled", field = field_name(field)),
        Refusal::Signature(_) => return None,
    })
}

fn time_range(e: &TimeRange) -> String {
    match e {
        TimeRange::TooEarly(given) => tr!("err-time-too-early", given = given.as_str()),
        TimeRange::Ahead { given, now } => {
            tr!("err-time-ahead", given = given.as_str(), now = now.as_str())
        }
    }
}

/// `visit`, `ticket`, `household`... in this run's language.
fn kind_name(kind: &str) -> String {
    crate::i18n::message_or(&format!("kind-{}", kind.replace(' ', "-")), kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transparent_wrapper_is_told_once() {
        let inner = OpenError::NotInitialised("/tmp/h".into());
        let e = anyhow::Error::new(DaemonError::Open(inner));
        assert_eq!(
            one_line(&e),
            "/tmp/h is not initialised (run `yizhan init --name NAME` first)"
        );
    }

    /// The English catalogue says what the node's own `Display` says: the two are kept
    /// alike by hand, and this holds them to it.
    #[test]
    fn the_english_catalogue_matches_the_node_s_own_words() {
        use yizhan_node::model::TimeRange;
        let range = TimeRange::Ahead {
            given: "2030-01-01T00:00:00Z".into(),
            now: "2026-12-08T00:00:00Z".into(),
        };
        let errors: Vec<Box<dyn Error + Send + Sync>> = vec![
            Box::new(OpenError::NotInitialised("/h".into())),
            Box::new(OpenError::NeedsPassphrase("/h".into())),
            Box::new(OpenError::NotEncrypted("/h".into())),
            Box::new(StoreOpenError::WrongPassphrase),
            Box::new(StoreOpenError::TooNew(99)),
            Box::new(InitError::AlreadyInitialised("/h".into())),
            Box::new(InitError::EmptyName),
            Box::new(ResolveError::TooShort("abc".into())),
            Box::new(ResolveError::Malformed("xyz".into(), "ticket")),
            Box::new(ResolveError::NotFound("abcdef".into(), "visit")),
            Box::new(ResolveError::Ambiguous("abcdef".into(), 2, "ticket")),
            Box::new(FieldError::Empty("title")),
            Box::new(FieldError::TooLong("note", 65536)),
            Box::new(FieldError::TooMany("residents", 100)),
            Box::new(FieldError::NothingToChange),
            Box::new(FieldError::Multiline),
            Box::new(range.clone()),
            Box::new(TimeRange::TooEarly("1999-01-01T00:00:00Z".into())),
            Box::new(BadTime("2026/11/20".into())),
            Box::new("养老".parse::<yizhan_node::model::Category>().unwrap_err()),
            Box::new("贫困户".parse::<yizhan_node::model::Tag>().unwrap_err()),
            Box::new(SiteError::NoGrid),
            Box::new(SiteError::RevokeSelf),
            Box::new(SiteError::ExpiresDays(0)),
            Box::new(SiteError::NotStation("enroll devices")),
            Box::new(SyncError::NotMember),
            Box::new(QuarantineError::NotStation),
            Box::new(DaemonError::NoStation),
            Box::new(Refusal::NotOwnGrid {
                grid: "安华里".into(),
                own: "和平里".into(),
            }),
            Box::new(Refusal::StationNeedsGrid),
            Box::new(Refusal::NotJoined),
            Box::new(Refusal::HouseholdExists {
                grid: "g".into(),
                address: "a".into(),
                id: "i".into(),
            }),
            Box::new(Refusal::HouseholdMovedAway {
                grid: "g".into(),
                address: "a".into(),
                id: "i".into(),
            }),
            Box::new(Refusal::HouseholdInOtherGrid {
                id: "i".into(),
                grid: "g".into(),
                given: "h".into(),
            }),
            Box::new(Refusal::MalformedHousehold),
            Box::new(Refusal::HouseholdAmbiguous("abcdef".into())),
            Box::new(Refusal::NotFinished("open".into())),
            Box::new(Refusal::PolicyStationOnly),
            Box::new(Refusal::PolicyDays(3650)),
            Box::new(Refusal::NotVisitAuthor),
            Box::new(Refusal::UnknownTicket("t".into())),
            Box::new(Refusal::NotA("i".into(), "ticket")),
            Box::new(Refusal::NoRecord("i".into())),
            Box::new(Refusal::NotSettled("note".into())),
            Box::new(Refusal::NoticeStationOnly),
            Box::new(FieldError::MultilineGrid),
        ];
        for e in &errors {
            let e: &(dyn Error + 'static) = e.as_ref();
            assert!(known(e).is_some(), "not in the catalogue: {e}");
            assert_eq!(tell(e), e.to_string());
        }
    }

    #[test]
    fn context_and_cause_are_both_told() {
        let e = anyhow::Error::new(FieldError::Empty("title")).context("row 3");
        assert_eq!(one_line(&e), "row 3: title must not be empty");
    }
}
