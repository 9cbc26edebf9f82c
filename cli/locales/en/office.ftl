# Export, import and printing: office files. The Chinese catalogue (../zh/) has the same
# messages with the same arguments. The printed page is always in Chinese: the print-*
# labels here only mirror the Chinese ones.

office-exporting = exporting
office-importing = importing
office-exported = { $count ->
    [one] Exported 1 record to { $file }.
   *[other] Exported { $count } records to { $file }.
}
office-imported = { $count ->
    [one] Imported 1 record.
   *[other] Imported { $count } records.
}
office-cut = record { $record }: { $column } has { $chars } characters; a cell holds { $max }, so it was cut there and ends in …
office-xlsx-needs-out = an Excel workbook is not for a terminal: give --out FILE (or send stdout to a file)
office-cannot-write = cannot write { $file }
office-cannot-read = cannot read { $file }
office-too-large = { $file } is larger than { $mib } MiB, more than an export of a station holds: nothing imported
office-bad-row = { $place }: { $reason }
office-place-csv = row { $row } (line { $line })
office-place-json = record { $n }
office-place-sheet = row { $n }
office-nothing-imported = { $file }: nothing imported
print-written = Wrote the page to { $file }.

print-visit-title = Visit record
print-ticket-title = Ticket: { $title }
print-household-title = Household: { $address }
print-footer = Record { $id } · printed { $at } · yizhan
print-none = (none)
print-removed = (removed)
print-overdue = overdue
print-history = History
print-comments = Comments
print-visits = Visits
print-tickets = Tickets
print-at = When
print-who = Who
print-change = Change
print-what = What
print-comment = Comment
print-made = made
print-changed = changed
print-commented = commented
print-settled = settled a conflict
print-household = Household
print-address = Address
print-grid = Grid
print-visited-at = Visited
print-visitor = Visitor
print-category = Category
print-residents = Residents
print-note = Note
print-needs = Needs
print-id = Id
print-title = Title
print-status = Status
print-priority = Priority
print-channel = Channel
print-opened-by = Opened by
print-opened-at = Opened
print-assignee = Assignee
print-due = Due
print-resolved-at = Resolved
print-satisfaction = Satisfaction
print-tags = Tags
print-phone = Phone
print-added-at = Added
print-last-visit = Last visit
print-next-due = Next visit due
print-field-household = Household
print-field-grid = Grid
print-field-category = Category
print-field-note = Note
print-field-needs = Needs
print-field-visited-at = Visited
print-field-residents = Residents
print-field-tickets = Tickets
print-field-title = Title
print-field-status = Status
print-field-priority = Priority
print-field-assignee = Assignee
print-field-opened-at = Opened
print-field-comments = Comment
print-field-comment = Comment
print-field-address = Address
print-field-phone = Phone
print-field-added-at = Added
print-field-tags = Tags
print-field-due = Due
print-field-channel = Channel
print-field-resolved-at = Resolved
print-field-satisfaction = Satisfaction
print-field-rated-at = Rated
print-household-residents = Residents
print-tag-added = Tag: { $tag }
print-tag-removed = Tag removed: { $tag }
print-household-note = Note
