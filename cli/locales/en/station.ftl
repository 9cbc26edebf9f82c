# The station head's commands: members, quarantine, sync and serve, config, and the report.
# The Chinese catalogue (../zh/station.ftl) holds the same ids with the same arguments.

## members

members-col-name = NAME
members-col-role = ROLE
members-col-grids = GRIDS
members-col-expires = EXPIRES
members-col-last-sync = LAST SYNC
members-col-status = STATUS
members-col-device = DEVICE
members-role = { $role ->
    [station] station
    [volunteer] volunteer
    [district] district
   *[other] { $role }
}
members-expires-never = never
members-never-synced = never
members-status-revoked = revoked
members-status-expired = expired
members-status-active = active
members-none = No members known (this node has not joined a site).

## quarantine

quarantine-none = Nothing is held in quarantine.
quarantine-change = Held change { $id }
quarantine-kind = { $kind ->
    [visit] visit
    [ticket] ticket
    [household] household
    [policy] policy
   *[other] record
}
quarantine-key-record = record
quarantine-key-author = author
quarantine-key-made = made
quarantine-key-received = received
quarantine-key-writes = writes
quarantine-key-waits = waits for
quarantine-key-why = held because
quarantine-author-revoked = { $name } (revoked { $at }: { $reason })
quarantine-author-revoked-no-reason = { $name } (revoked { $at })
quarantine-writes-nothing = nothing (bookkeeping only)
quarantine-waits-nothing = nothing held
quarantine-waits-held = { $id } (also held)
quarantine-removed = (removed)
quarantine-reason-revoked = its author was revoked before the station received it
quarantine-reason-builds-on = it builds on a change that is itself held
quarantine-accepted = { $count ->
    [one] Merged 1 held change.
   *[other] Merged { $count } held changes.
}
quarantine-rejected = { $count ->
    [one] Dropped 1 held change for good.
   *[other] Dropped { $count } held changes for good.
}
quarantine-waits-for = change { $change } builds on held change { $waits }, which is not being accepted with it, so nothing was merged: accept that one first (`yizhan quarantine accept { $first }`), then this one, or both with `yizhan quarantine accept --all`
quarantine-not-merged = change { $change } was not merged: it builds on changes this station does not hold yet; it stays in quarantine until they arrive
quarantine-held-record = { $kind ->
    [visit] visit
    [ticket] ticket
   *[other] record
} { $id } is held in quarantine: the author { $author } was revoked { $at } before the station received { $count ->
    [one] its change
   *[other] its { $count } changes
}; see `yizhan quarantine list`

## sync and serve

addr-not-host-port = '{ $addr }' is not a HOST:PORT address
addr-unresolved = the host '{ $host }' in '{ $addr }' cannot be found (its name does not resolve: check the spelling and the network)
sync-no-station = no station address is known: give HOST:PORT, or join with --station HOST:PORT
sync-spinner = syncing with { $addr }
sync-progress = syncing with { $addr }: sent { $sent ->
    [one] 1 change
   *[other] { $sent } changes
}, received { $received }
sync-done = Synced with { $addr }: sent { $sent ->
    [one] 1 change
   *[other] { $sent } changes
}, received { $received }, rejected { $rejected } ({ $bytes_out } bytes out, { $bytes_in } in, { $trips ->
    [one] 1 round trip
   *[other] { $trips } round trips
}).
# The first line of `serve`: scripts read it, so it is the same in every language.
serve-listening = listening on { $addr }
serve-synced = synced with { $peer }: sent { $sent ->
    [one] 1 change
   *[other] { $sent } changes
}, received { $received }, rejected { $rejected }
serve-found = found { $peer } nearby at { $addrs }
serve-ignored = ignored { $who } nearby: { $reason }
serve-a-node = a node
serve-failed = sync failed: { $error }
serve-failed-with = sync failed with { $peer }: { $error }
serve-runtime = cannot start the async runtime
serve-stopped = the daemon stopped unexpectedly

## config

config-col-setting = setting
config-col-value = value
config-col-from = from
config-source = { $source ->
    [default] default
    [file] config file
    [join] join
   *[flag] flag
}
config-file = Config file: { $path }
config-file-missing = Config file: { $path } (not present)
config-bad-value = the config file { $path }, { $key } = { $value }

## report

report-title = Station report
report-period = { $since } to { $until }
report-period-line = Period: { $period } (start included, end excluded)
report-first-record = the first record
report-generated = Generated: { $at }
report-made-on = Made on: { $name } ({ $role })
report-note = Note:
report-not-station = This node is not the station: the figures cover only the records it holds, and "last sync" means the last sync with this node.
report-partial = note: this node is not the station; the report covers only the records it holds
report-cannot-write = cannot write { $path }
report-cannot-draw = cannot draw the chart: { $reason }
report-written = Wrote the report to { $path }.
report-attention = Needs attention
report-quarantine = Quarantine:
report-held = { $count ->
    [one] 1 change by a revoked member waits for the station's decision (`yizhan quarantine list`).
   *[other] { $count } changes by revoked members wait for the station's decision (`yizhan quarantine list`).
}
report-revoked-devices = Revoked devices
report-col-member = Member
report-col-revoked-at = Revoked
report-col-reason = Reason
report-summary = Summary
report-col-figure = Figure
report-col-value = Value
report-visits = Visits
report-tickets-opened = Tickets opened
report-tickets-resolved = Tickets resolved
report-still-open = Still open at the end
report-median = Median time to resolve
report-not-synced-count = Volunteers not synced for { $days } days
report-not-synced-card = Volunteers not synced
report-sec-visits = 1. Visits
report-by-grid = By grid
report-by-category = By category
report-by-volunteer = By volunteer
report-col-grid = Grid
report-col-grids = Grids
report-col-category = Category
report-col-volunteer = Volunteer
report-col-visits = Visits
report-col-tickets = Tickets
report-total = Total
report-sec-tickets = 2. Tickets
report-col-opened = Opened
report-col-resolved = Resolved
report-col-open = Still open
report-sec-not-synced = 3. Volunteers not synced for { $days } days
report-all-synced = None: every volunteer synced within { $days } days.
report-col-last-sync = Last sync
report-col-days = Days
report-never = never
report-sec-grids = 4. By grid
report-grids-note = Covered: households whose latest visit is within their interval at the end. On time: resolved at or before the ticket's due time.
report-col-households = Households
report-col-covered = Covered
report-col-on-time = On time
report-col-rated = Rated
report-col-satisfied = Satisfied
report-col-overdue-tickets = Overdue tickets
report-sec-volunteers = 5. By volunteer
report-sec-channels = 6. Tickets by channel
report-col-channel = Channel
report-sec-overdue = 7. Overdue at the end
report-col-item = Item
report-col-count = Count
report-overdue-households = Households overdue for a visit
report-overdue-tickets = Tickets overdue
report-list-of = { $title }:
report-more = … and { $count } more (`--json`)
report-none = None
report-end = End
report-uncategorised = none
report-no-grid = no grid
report-not-in-roster = { $id } (not in the roster)
report-days-hours = { $days } d { $hours } h
report-hours-minutes = { $hours } h { $minutes } min
report-minutes = { $minutes } min
report-footer = Visits count by visit time; a ticket's resolution time is the time of the signed change that resolved it. yizhan { $version }
