# Messages shared by every command. Each area of the binary has a file of its own beside
# this one; the Chinese catalogue (../zh/) holds the same ids with the same arguments.

error-line = error: { $reason }
changes = { $count ->
    [one] 1 change
   *[other] { $count } changes
}

## The passphrase of an encrypted home
passphrase-prompt = Passphrase:
passphrase-again = Passphrase again:
passphrase-needed = this needs a passphrase: set YIZHAN_PASSPHRASE or run it at a terminal
passphrase-unreadable = cannot read the passphrase: { $reason }
passphrases-differ = the two passphrases differ
home-empty = --home must not be empty
home-none = no home directory: give --home DIR or set YIZHAN_HOME

## Roles
role-station = station
role-volunteer = volunteer
role-district = district
role-unenrolled = unenrolled

## Labels of fields, in `show` and in a record's history
field-id = id
field-device = device
field-name = name
field-role = role
field-site = site
field-grids = grids
field-household = household
field-household_id = household id
field-grid = grid
field-category = category
field-visited_at = visited at
field-residents = residents
field-needs = needs
field-note = note
field-author = author
field-tickets = tickets
field-title = title
field-status = status
field-priority = priority
field-assignee = assignee
field-opened_by = opened by
field-opened_at = opened at
field-channel = channel
field-due = due
field-resolved_at = resolved at
field-satisfaction = satisfaction
field-rated_at = rated at
field-visits = visits
field-address = address
field-tags = tags
field-phone = phone
field-added_at = added at
field-last_visit = last visit
field-next_due = next due
field-records = records
field-at-station = at the station
field-conflicts = conflicts
field-rejected = rejected
field-dropped = dropped
field-misbehaviour = misbehaviour
field-comments = comments

## Table headers
col-id = ID
col-visited = VISITED
col-household = HOUSEHOLD
col-grid = GRID
col-category = CATEGORY
col-author = AUTHOR
col-opened = OPENED
col-due = DUE
col-status = STATUS
col-priority = PRIORITY
col-title = TITLE
col-assignee = ASSIGNEE
col-at = AT
col-text = TEXT
col-field = FIELD
col-values = VALUES
col-value = VALUE
col-record = RECORD
col-kind = KIND
col-change = CHANGE
col-what = WHAT
col-device = DEVICE
col-name = NAME
col-address = ADDRESS
col-last-sync = LAST SYNC

## Identity
init-done = Initialised { $name } in { $home }.
id-no-site = - (not a member of a site yet)
enroll-done = Enrolled { $name } ({ $device }). Hand this token to the device, which runs `yizhan join TOKEN`:
token-invalid = the token is not valid: { $reason }
join-done = Joined site { $site } as { $role } for grids { $grids }.
revoke-done = Revoked { $device }. Members refuse it once the revocation reaches them.

## Records
saved-visit = Saved visit { $id }.
saved-ticket = Saved ticket { $id }.
saved-comment = Saved comment on ticket { $id }.
saved-household = Saved household { $id }.
no-visits = No visits.
no-tickets = No tickets.
overdue-mark = { $when } (overdue)
comments-heading = Comments:
history-heading = History:
history-none = (none)
history-removed = (removed)
conflicts-in-record = Conflicts (edited concurrently; the first value is shown):
member-unknown = no member is named '{ $given }' or has an id that starts with it
member-ambiguous = { $count } members are named '{ $given }': give the device id ({ $ids })
note-file-unreadable = cannot read { $file }: { $reason }
note-file-not-text = { $file } is not UTF-8 text

## History verbs (the signed change's message)
verb-add-visit = add visit
verb-edit-visit = edit visit
verb-open-ticket = open ticket
verb-update-ticket = update ticket
verb-comment = comment
verb-add-household = add household
verb-edit-household = edit household
verb-set-policy = set policy
verb-resolve = resolve
verb-link-household = link household

## Status
status-records = { $visits ->
    [one] 1 visit
   *[other] { $visits } visits
}, { $tickets ->
    [one] 1 ticket
   *[other] { $tickets } tickets
}
status-this-is-station = this is the station
status-not-confirmed = not yet confirmed; { $pending ->
    [one] 1 change pending
   *[other] { $pending } changes pending
}
status-confirmed = confirmed { $at }; { $pending ->
    [one] 1 change pending
   *[other] { $pending } changes pending
}
status-none = none
status-dropped = { $count ->
    [one] 1 record that left this laptop's grids was removed
   *[other] { $count } records that left this laptop's grids were removed
}
status-misbehaviour = { $count } recorded; latest: { $kind } by { $device } ({ $detail })
status-peers = Peers:
status-never = never

## Verify
verify-done = Checked { $count ->
    [one] 1 change
   *[other] { $count } changes
}: { $bad ->
    [0] all good
   *[other] { $bad } bad
}.
verify-problems = verification found { $count ->
    [one] 1 problem
   *[other] { $count } problems
}: { $shown }

## Conflicts and resolve
no-conflicts = No conflicts.
conflicts-summary = { $count ->
    [one] 1 field in conflict
   *[other] { $count } fields in conflict
}; the first value of each is the one shown. Settle one with: yizhan resolve ID FIELD VALUE
resolve-done = Resolved { $field } of { $id }: it is now '{ $value }' on this node, and on every node once synced.
record-ambiguous = '{ $prefix }' is ambiguous: it matches a visit and a ticket; give more characters
record-none = no visit or ticket matches '{ $prefix }'
record-malformed = '{ $prefix }' is not a record id

## Record kinds
kind-visit = visit
kind-ticket = ticket
kind-household = household
kind-policy = policy

## Progress
progress-rows = rows
note-file-too-long = { $file } is longer than a record's text may be ({ $max } bytes)
field-comment = comment
kind-device = device
kind-quarantined-change = quarantined change

## Usage errors (clap's line follows as the detail)
usage-error = error: { $what }: { $detail }
usage-unknown-argument = unknown option
usage-unknown-command = unknown command
usage-bad-value = bad value
usage-missing-argument = a required option is missing
usage-missing-command = a command is missing
usage-conflict = options that cannot go together
usage-other = the command line is not valid
field-tag = tag
