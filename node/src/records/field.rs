//! The names of a record document's fields: one typed vocabulary for every module that
//! reads, writes, checks or describes a record. [`Field::as_str`] is the Automerge key the
//! field is stored under, so the stored format is these strings and nothing else.

use automerge::Prop;

/// A key of a record document's root map (see the table in [`crate::records`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// `kind`: `"visit"` or `"ticket"`, written once by the record's first change.
    Kind,
    /// `id`: the record id, written once by the record's first change.
    Id,
    /// `household`: the household concerned.
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
    /// `residents`: the list of residents a visit met.
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
    /// `opened_at`: when a ticket was opened (RFC 3339).
    OpenedAt,
    /// `comments`: the list of a ticket's comments.
    Comments,
}

impl Field {
    /// Every field.
    pub const ALL: [Field; 16] = [
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
    ];

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
        }
    }

    /// The field stored under `key`, if a record has one.
    pub fn parse(key: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == key)
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
        let keys: Vec<&str> = Field::ALL.iter().map(|f| f.as_str()).collect();
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
            ]
        );
        let comment: Vec<&str> = CommentField::ALL.iter().map(|f| f.as_str()).collect();
        assert_eq!(comment, ["author", "text", "at"]);
        for f in Field::ALL {
            assert_eq!(Field::parse(f.as_str()), Some(f));
        }
        for f in CommentField::ALL {
            assert_eq!(CommentField::parse(f.as_str()), Some(f));
        }
        assert_eq!(Field::parse("Needs"), None);
        assert_eq!(CommentField::parse("needs"), None);
    }
}
