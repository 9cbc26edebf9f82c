# Notices (notice publish, list, read). The Chinese catalogue (../zh/) has the same messages and arguments.

notice-station-only = only a station may publish a notice
notice-published = Published notice { $id }.
notice-marked-read = Marked as read: { $title }
notice-none = No notices.
notice-none-current = No current notices (--all also lists those that have ended).
notice-read = read
notice-unread = unread
notice-expired = ended
notice-whole-site = whole site
notice-no-end = no end
notice-nobody = nobody yet
notice-field-id = id
notice-field-published = published
notice-field-grids = for
notice-field-until = until
notice-field-read-by = read by

notice-report-section = 8. Notices
notice-report-none = No notices were published in the period.
notice-report-col-title = Notice
notice-report-col-for = For
notice-report-col-readers = Read
notice-report-col-of = Of
notice-report-col-id = Id

# Field names of a notice, in error lines and history (`output::label`).
field-body = text
field-until = until
field-published_at = published
notice-grid-multiline = a grid's name must be one line
kind-notice = notice
