# Messages shared by every command. Each area of the binary has a file of its own beside
# this one; the Chinese catalogue (../zh/) holds the same ids with the same arguments.

error-line = error: { $reason }
changes = { $count ->
    [one] 1 change
   *[other] { $count } changes
}
