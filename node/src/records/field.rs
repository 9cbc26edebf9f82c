//! The names of a record document's fields: one typed vocabulary for every module that
//! reads, writes, checks or describes a record. [`Field::as_str`] is the Automerge key the
//! field is stored under, so the stored format is these strings and nothing else.

use automerge::Prop;

use crate::model::{Priority, Tag};

/// A key of a record document's root map (see the table in [`crate::records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `kind`: `"visit"`, `"ticket"`, `"household"`, `"policy"` or `"notice"`, written once
    /// by the record's first change.
    Kind,
    /// `id`: the record id, written once by the record's first change.
    Id,
    /// `household`: the household concerned, as its address was written.
    Household,
    /// `grid`: the grid the record belongs to.
    Grid,
    /// `category`: a service category slug.
    Category,
    /// `note`: free text.
    Note,
    /// `needs`: what a visited household needs.
    Needs,
    /// `visited_at`: when a visit happened (RFC 3339).
    VisitedAt,
    /// `residents`: a visit's list of residents met; a household's residents, one name a
    /// line, as one text (a register, so that two makers of one household merge).
    Residents,
    /// `tickets`: the map of ticket ids a visit links.
    Tickets,
    /// `title`: a ticket's short title.
    Title,
    /// `status`: a ticket's status.
    Status,
    /// `priority`: a ticket's priority.
    Priority,
    /// `assignee`: the device id a ticket is assigned to.
    Assignee,
    /// `opened_at`: when the resident asked, for a ticket (RFC 3339).
    OpenedAt,
    /// `comments`: the list of a ticket's comments.
    Comments,
    /// `household_id`: the id of the household a visit or ticket is about.
    HouseholdId,
    /// `address`: a household's address.
    Address,
    /// `phone`: a household's phone number.
    Phone,
    /// `added_at`: when a household was added to the ledger (RFC 3339).
    AddedAt,
    /// `due`: a ticket's deadline (RFC 3339).
    Due,
    /// `channel`: how a ticket's request came in.
    Channel,
    /// `resolved_at`: when a ticket was first resolved or closed (RFC 3339).
    ResolvedAt,
    /// `satisfaction`: the resident's verdict in the follow-up call.
    Satisfaction,
    /// `rated_at`: when that verdict was recorded (RFC 3339).
    RatedAt,
    /// `body`: a notice's text.
    Body,
    /// `grids`: the grids a notice is for, one a line, sorted; empty for the whole site.
    Grids,
    /// `until`: when a notice stops being current (RFC 3339); none: it stays current.
    Until,
    /// `published_at`: when a notice was published (RFC 3339).
    PublishedAt,
    /// `tag:SLUG`: whether a household has the tag (`"true"` or `"false"`). One register
    /// a tag, so that tags added on two laptops merge.
    Tag(Tag),
    /// `visit_every:TAG`: the policy's visit interval for a tag, in days.
    VisitEvery(Tag),
    /// `ticket_due:PRIORITY`: the policy's days from request to deadline.
    TicketDue(Priority),
}

macro_rules! per_tag {
    ($t:expr, $prefix:literal) => {
        match $t {
            Tag::ElderlyAlone => concat!($prefix, "elderly-alone"),
            Tag::LowIncome => concat!($prefix, "low-income"),
            Tag::Disabled => concat!($prefix, "disabled"),
            Tag::Hardship => concat!($prefix, "hardship"),
            Tag::LeftBehindChild => concat!($prefix, "left-behind-child"),
            Tag::CommunityCorrection => concat!($prefix, "community-correction"),
            Tag::Ordinary => concat!($prefix, "ordinary"),
        }
    };
}

impl Field {
    /// Every field without a parameter.
    pub const PLAIN: [Field; 29] = [
        Field::Kind,
        Field::Id,
        Field::Household,
        Field::Grid,
        Field::Category,
        Field::Note,
        Field::Needs,
        Field::VisitedAt,
        Field::Residents,
        Field::Tickets,
        Field::Title,
        Field::Status,
        Field::Priority,
        Field::Assignee,
        Field::OpenedAt,
        Field::Comments,
        Field::HouseholdId,
        Field::Address,
        Field::Phone,
        Field::AddedAt,
        Field::Due,
        Field::Channel,
        Field::ResolvedAt,
        Field::Satisfaction,
        Field::RatedAt,
        Field::Body,
        Field::Grids,
        Field::Until,
        Field::PublishedAt,
    ];

    /// Every field.
    pub fn all() -> impl Iterator<Item = Field> {
        Field::PLAIN
            .into_iter()
            .chain(Tag::ALL.iter().map(|t| Field::Tag(*t)))
            .chain(Tag::ALL.iter().map(|t| Field::VisitEvery(*t)))
            .chain(Priority::ALL.iter().map(|p| Field::TicketDue(*p)))
    }

    /// The Automerge key the field is stored under.
    pub const fn as_str(self) -> &'static str {
        match self {
            Field::Kind => "kind",
            Field::Id => "id",
            Field::Household => "household",
            Field::Grid => "grid",
            Field::Category => "category",
            Field::Note => "note",
            Field::Needs => "needs",
            Field::VisitedAt => "visited_at",
            Field::Residents => "residents",
            Field::Tickets => "tickets",
            Field::Title => "title",
            Field::Status => "status",
            Field::Priority => "priority",
            Field::Assignee => "assignee",
            Field::OpenedAt => "opened_at",
            Field::Comments => "comments",
            Field::HouseholdId => "household_id",
            Field::Address => "address",
            Field::Phone => "phone",
            Field::AddedAt => "added_at",
            Field::Due => "due",
            Field::Channel => "channel",
            Field::ResolvedAt => "resolved_at",
            Field::Satisfaction => "satisfaction",
            Field::RatedAt => "rated_at",
            Field::Body => "body",
            Field::Grids => "grids",
            Field::Until => "until",
            Field::PublishedAt => "published_at",
            Field::Tag(t) => per_tag!(t, "tag:"),
            Field::VisitEvery(t) => per_tag!(t, "visit_every:"),
            Field::TicketDue(p) => match p {
                Priority::Low => "ticket_due:low",
                Priority::Normal => "ticket_due:normal",
                Priority::High => "ticket_due:high",
                Priority::Urgent => "ticket_due:urgent",
            },
        }
    }

    /// The field stored under `key`, if a record has one.
    pub fn parse(key: &str) -> Option<Field> {
        // Called for every operation a received change writes at a record's root: a
        // match, not a search of `all()`.
        let tag = |slug: &str| Tag::ALL.iter().copied().find(|t| t.as_str() == slug);
        Some(match key {
            "kind" => Field::Kind,
            "id" => Field::Id,
            "household" => Field::Household,
            "grid" => Field::Grid,
            "category" => Field::Category,
            "note" => Field::Note,
            "needs" => Field::Needs,
            "visited_at" => Field::VisitedAt,
            "residents" => Field::Residents,
            "tickets" => Field::Tickets,
            "title" => Field::Title,
            "status" => Field::Status,
            "priority" => Field::Priority,
            "assignee" => Field::Assignee,
            "opened_at" => Field::OpenedAt,
            "comments" => Field::Comments,
            "household_id" => Field::HouseholdId,
            "address" => Field::Address,
            "phone" => Field::Phone,
            "added_at" => Field::AddedAt,
            "due" => Field::Due,
            "channel" => Field::Channel,
            "resolved_at" => Field::ResolvedAt,
            "satisfaction" => Field::Satisfaction,
            "rated_at" => Field::RatedAt,
            "body" => Field::Body,
            "grids" => Field::Grids,
            "until" => Field::Until,
            "published_at" => Field::PublishedAt,
            _ => {
                if let Some(slug) = key.strip_prefix("tag:") {
                    Field::Tag(tag(slug)?)
                } else if let Some(slug) = key.strip_prefix("visit_every:") {
                    Field::VisitEvery(tag(slug)?)
                } else if let Some(p) = key.strip_prefix("ticket_due:") {
                    Field::TicketDue(Priority::ALL.iter().copied().find(|x| x.as_str() == p)?)
                } else {
                    return None;
                }
            }
        })
    }
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Field> for Prop {
    fn from(field: Field) -> Prop {
        Prop::Map(field.as_str().to_string())
    }
}

/// A key of a comment's map, in a ticket's `comments` list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CommentField {
    /// `author`: the device id of the comment's writer, as that writer states it.
    Author,
    /// `text`: the comment.
    Text,
    /// `at`: when it was written (RFC 3339).
    At,
}

impl CommentField {
    /// Every comment field.
    pub const ALL: [CommentField; 3] = [CommentField::Author, CommentField::Text, CommentField::At];

    /// The Automerge key the field is stored under.
    pub const fn as_str(self) -> &'static str {
        match self {
            CommentField::Author => "author",
            CommentField::Text => "text",
            CommentField::At => "at",
        }
    }

    /// The comment field stored under `key`, if a comment has one.
    pub fn parse(key: &str) -> Option<CommentField> {
        CommentField::ALL.into_iter().find(|f| f.as_str() == key)
    }
}

impl From<CommentField> for Prop {
    fn from(field: CommentField) -> Prop {
        Prop::Map(field.as_str().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys are the stored format: a renamed key would make every stored record
    /// unreadable and every peer's changes refused.
    #[test]
    fn keys_are_the_stored_format() {
        let keys: Vec<&str> = Field::all().map(|f| f.as_str()).collect();
        assert_eq!(
            keys,
            [
                "kind",
                "id",
                "household",
                "grid",
                "category",
                "note",
                "needs",
                "visited_at",
                "residents",
                "tickets",
                "title",
                "status",
                "priority",
                "assignee",
                "opened_at",
                "comments",
                "household_id",
                "address",
                "phone",
                "added_at",
                "due",
                "channel",
                "resolved_at",
                "satisfaction",
                "rated_at",
                "body",
                "grids",
                "until",
                "published_at",
                "tag:elderly-alone",
                "tag:low-income",
                "tag:disabled",
                "tag:hardship",
                "tag:left-behind-child",
                "tag:community-correction",
                "tag:ordinary",
                "visit_every:elderly-alone",
                "visit_every:low-income",
                "visit_every:disabled",
                "visit_every:hardship",
                "visit_every:left-behind-child",
                "visit_every:community-correction",
                "visit_every:ordinary",
                "ticket_due:low",
                "ticket_due:normal",
                "ticket_due:high",
                "ticket_due:urgent",
            ]
        );
        let comment: Vec<&str> = CommentField::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(comment, ["author", "text", "at"]);
        for f in Field::all() {
            assert_eq!(Field::parse(f.as_str()), Some(f));
        }
        for f in CommentField::ALL {
            assert_eq!(CommentField::parse(f.as_str()), Some(f));
        }
        assert_eq!(Field::parse("Needs"), None);
        assert_eq!(CommentField::parse("needs"), None);
    }
}
