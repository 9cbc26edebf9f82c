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
quarantine-waits-for = change { $change } builds on held change { $waits }, which is not being accepted with it, so nothing was merged: accept { $waits } first (`yizhan quarantine accept { $first }`), then this one, or accept both with `yizhan quarantine accept --all`
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
