//! The vocabulary of records: service categories, ticket status, priority, channel and
//! satisfaction, household tags, and times.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Local, NaiveDate, SecondsFormat, TimeZone, Timelike};

/// One of the seven services of the community station.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Category {
    /// 为民服务
    ResidentServices,
    /// 扶贫解困
    PovertyRelief,
    /// 家园共治
    CoGovernance,
    /// 城市管理
    CityManagement,
    /// 纠纷调解
    DisputeMediation,
    /// 政策咨询
    PolicyConsultation,
    /// 信息发布
    Information,
}

impl Category {
    /// All categories, in the station's order.
    pub const ALL: [Category; 7] = [
        Category::ResidentServices,
        Category::PovertyRelief,
        Category::CoGovernance,
        Category::CityManagement,
        Category::DisputeMediation,
        Category::PolicyConsultation,
        Category::Information,
    ];

    /// The slug used in JSON and in the documents.
    pub fn slug(self) -> &'static str {
        match self {
            Category::ResidentServices => "resident-services",
            Category::PovertyRelief => "poverty-relief",
            Category::CoGovernance => "co-governance",
            Category::CityManagement => "city-management",
            Category::DisputeMediation => "dispute-mediation",
            Category::PolicyConsultation => "policy-consultation",
            Category::Information => "information",
        }
    }

    /// The Chinese name.
    pub fn zh(self) -> &'static str {
        match self {
            Category::ResidentServices => "为民服务",
            Category::PovertyRelief => "扶贫解困",
            Category::CoGovernance => "家园共治",
            Category::CityManagement => "城市管理",
            Category::DisputeMediation => "纠纷调解",
            Category::PolicyConsultation => "政策咨询",
            Category::Information => "信息发布",
        }
    }
}

/// A word that is not one of a fixed set of values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{given}' (expected one of: {expected})")]
pub struct UnknownValue {
    /// What was being parsed.
    pub what: &'static str,
    /// What the user gave.
    pub given: String,
    /// The accepted values.
    pub expected: String,
}

impl FromStr for Category {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        Category::ALL
            .into_iter()
            .find(|c| c.slug().eq_ignore_ascii_case(t) || c.zh() == t)
            .ok_or_else(|| UnknownValue {
                what: "category",
                given: s.to_string(),
                expected: Category::ALL
                    .iter()
                    .map(|c| format!("{} {}", c.slug(), c.zh()))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.slug())
    }
}

macro_rules! named_enum {
    ($(#[$m:meta])* $name:ident, $what:literal, { $($(#[$vm:meta])* $var:ident => $word:literal, $zh:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $var),+ }

        impl $name {
            /// Every value, in order.
            pub const ALL: &'static [$name] = &[$($name::$var),+];
            /// The slug used in JSON and in the documents.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$var => $word),+ }
            }
            /// The Chinese name.
            pub fn zh(self) -> &'static str {
                match self { $($name::$var => $zh),+ }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let t = s.trim();
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str().eq_ignore_ascii_case(t) || v.zh() == t)
                    .ok_or_else(|| UnknownValue {
                        what: $what,
                        given: s.to_string(),
                        expected: $name::ALL
                            .iter()
                            .map(|v| format!("{} {}", v.as_str(), v.zh()))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// Where a ticket stands.
    Status, "status", {
        /// Newly opened.
        Open => "open", "待处理",
        /// Someone is working on it.
        InProgress => "in_progress", "处理中",
        /// The need was met.
        Resolved => "resolved", "已办结",
        /// Closed (archived); never deleted.
        Closed => "closed", "已关闭",
    }
);

named_enum!(
    /// How urgent a ticket is.
    Priority, "priority", {
        /// Can wait.
        Low => "low", "低",
        /// The default.
        Normal => "normal", "普通",
        /// Soon.
        High => "high", "高",
        /// Now.
        Urgent => "urgent", "紧急",
    }
);

named_enum!(
    /// A household's tag in the ledger; each has a visit interval in the station's policy.
    Tag, "tag", {
        /// 独居老人
        ElderlyAlone => "elderly-alone", "独居老人",
        /// 低保户
        LowIncome => "low-income", "低保户",
        /// 残疾人
        Disabled => "disabled", "残疾人",
        /// 困难户
        Hardship => "hardship", "困难户",
        /// 留守儿童
        LeftBehindChild => "left-behind-child", "留守儿童",
        /// 社区矫正
        CommunityCorrection => "community-correction", "社区矫正",
        /// 普通户: what a household without tags is.
        Ordinary => "ordinary", "普通户",
    }
);

impl Tag {
    /// The station's default visit interval for a household with this tag, in days.
    pub fn default_visit_every(self) -> u32 {
        match self {
            Tag::Ordinary => 182,
            _ => 30,
        }
    }
}

impl Priority {
    /// The station's default days from a request to its ticket's deadline.
    pub fn default_ticket_due(self) -> u32 {
        match self {
            Priority::Urgent => 1,
            Priority::High => 3,
            Priority::Normal => 7,
            Priority::Low => 15,
        }
    }
}

named_enum!(
    /// How a request reached the station.
    Channel, "channel", {
        /// 热线: the station's hotline.
        Hotline => "hotline", "热线",
        /// 信箱: the mailbox.
        Mailbox => "mailbox", "信箱",
        /// 来访: a resident who came to the station.
        WalkIn => "walk-in", "来访",
        /// 走访: a volunteer's home visit.
        Visit => "visit", "走访",
        /// 巡查: a volunteer's patrol of the grid.
        Patrol => "patrol", "巡查",
    }
);

named_enum!(
    /// The resident's verdict in the follow-up call (回访).
    Satisfaction, "satisfaction", {
        /// 满意
        Satisfied => "satisfied", "满意",
        /// 基本满意
        Basic => "basic", "基本满意",
        /// 不满意
        Unsatisfied => "unsatisfied", "不满意",
    }
);

/// A day in milliseconds: intervals and deadlines are whole days.
pub const DAY_MS: i64 = 24 * 3600 * 1000;

/// The most days a policy may set for a visit interval or a ticket deadline (ten years).
pub const MAX_POLICY_DAYS: u32 = 3650;

/// A time as the user gave it: the instant plus the offset it was written in, so that it
/// prints back the way it came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Time(DateTime<FixedOffset>);

/// A time that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "malformed time '{0}' (expected RFC 3339 like 2026-11-27T09:30:00+08:00, or a date like 2026-11-27)"
)]
pub struct BadTime(pub String);

/// The earliest time something recorded may have happened: 2000-01-01T00:00:00Z. Earlier
/// is a typo (`1900`, `0026`), not a visit.
pub const EARLIEST: &str = "2000-01-01T00:00:00Z";
const EARLIEST_MS: i64 = 946_684_800_000;

/// How far ahead of the node's clock a time may lie (a day: time zones and a laptop clock
/// that is a little off, never a visit not made yet).
pub const AHEAD_MS: i64 = 24 * 3600 * 1000;

/// A time at which something happened that cannot be true.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimeRange {
    /// Before [`EARLIEST`].
    #[error("{0} is before 2000-01-01")]
    TooEarly(String),
    /// More than [`AHEAD_MS`] after the clock.
    #[error("{given} is more than a day ahead of this computer's clock ({now})")]
    Ahead {
        /// The time given.
        given: String,
        /// The clock.
        now: String,
    },
}

impl Time {
    /// The current time in the machine's time zone, to the second.
    pub fn now() -> Self {
        let now = Local::now().fixed_offset();
        Time(now.with_nanosecond(0).unwrap_or(now))
    }

    /// Milliseconds since the Unix epoch, now (not rounded to the second like [`Time::now`]).
    pub fn now_millis() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0.timestamp_millis()
    }

    /// The time at `millis` since the epoch, in the machine's time zone (as [`Time::now`]
    /// and plain dates are, so that everything a node prints shares one offset).
    pub fn from_millis(millis: i64) -> Self {
        Time(
            DateTime::from_timestamp_millis(millis)
                .unwrap_or_default()
                .with_timezone(&Local)
                .fixed_offset(),
        )
    }

    /// Checks a time at which something happened (a visit, a ticket's opening) against
    /// the clock: it must lie between [`EARLIEST`] and [`AHEAD_MS`] after `now_ms`.
    /// Deadlines are not such times and are not checked here.
    pub fn check_happened(self, now_ms: i64) -> Result<(), TimeRange> {
        let ms = self.millis();
        if ms < EARLIEST_MS {
            return Err(TimeRange::TooEarly(self.to_rfc3339()));
        }
        if ms > now_ms.saturating_add(AHEAD_MS) {
            return Err(TimeRange::Ahead {
                given: self.to_rfc3339(),
                now: Time::from_millis(now_ms).to_rfc3339(),
            });
        }
        Ok(())
    }

    /// RFC 3339, to the second (or finer if the input had fractions), `Z` for UTC.
    pub fn to_rfc3339(self) -> String {
        let fmt = if self.0.timestamp_subsec_nanos() == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::AutoSi
        };
        self.0.to_rfc3339_opts(fmt, true)
    }
}

impl FromStr for Time {
    type Err = BadTime;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
            return Ok(Time(dt));
        }
        if let Ok(date) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            // A plain date is midnight at the start of that day, in the machine's time zone.
            let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
            if let Some(dt) = Local.from_local_datetime(&midnight).earliest() {
                return Ok(Time(dt.fixed_offset()));
            }
        }
        Err(BadTime(s.to_string()))
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_parse_from_slug_and_chinese() {
        for c in Category::ALL {
            assert_eq!(c.slug().parse::<Category>().unwrap(), c);
            assert_eq!(c.zh().parse::<Category>().unwrap(), c);
        }
        assert!("welfare".parse::<Category>().is_err());
    }

    #[test]
    fn times_keep_their_offset() {
        let t: Time = "2026-11-20T09:30:00+08:00".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-20T09:30:00+08:00");
        let u: Time = "2026-11-20T01:30:00Z".parse().unwrap();
        assert_eq!(t.millis(), u.millis());
        assert!("2026-13-01".parse::<Time>().is_err());
        assert!("yesterday".parse::<Time>().is_err());
    }

    #[test]
    fn happened_times_lie_between_2000_and_a_day_ahead() {
        let now: Time = "2026-12-07T12:00:00Z".parse().unwrap();
        let t = |s: &str| s.parse::<Time>().unwrap().check_happened(now.millis());
        assert_eq!(EARLIEST.parse::<Time>().unwrap().millis(), EARLIEST_MS);
        assert!(t("2000-01-01T00:00:00Z").is_ok());
        assert!(matches!(
            t("1999-12-31T23:59:59Z"),
            Err(TimeRange::TooEarly(_))
        ));
        assert!(matches!(
            t("1900-01-01T00:00:00Z"),
            Err(TimeRange::TooEarly(_))
        ));
        assert!(t("2026-12-08T12:00:00Z").is_ok());
        assert!(matches!(
            t("2026-12-08T12:00:01Z"),
            Err(TimeRange::Ahead { .. })
        ));
        assert!(matches!(
            t("2030-01-01T00:00:00Z"),
            Err(TimeRange::Ahead { .. })
        ));
    }
}
