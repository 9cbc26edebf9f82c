# The household ledger: `household`, `policy`, `due`.

no-households = No households.
col-residents = RESIDENTS
col-tags = TAGS
col-last-visit = LAST VISIT
col-next-due = NEXT DUE
col-note = NOTE
col-tag = TAG
col-visit-every = VISIT EVERY (DAYS)
col-ticket-due = TICKET DUE (DAYS)
household-due-now = now
household-visits = Visits:
household-tickets = Tickets:
policy-days-invalid = '{ $days }' is not a number of whole days
due-within-invalid = --within takes whole days from 0 to 3650, not '{ $given }'
due-never-visited = never visited
due-overdue = { $days ->
    [one] 1 day overdue
   *[other] { $days } days overdue
}
due-today = due today
due-in = { $days ->
    [one] due in 1 day
   *[other] due in { $days } days
}
due-households = Households due a visit ({ $now }):
due-tickets = Tickets due:
due-none = None.
