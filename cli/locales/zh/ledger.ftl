# 台账：户、规则、到期清单（household、policy、due）。

no-households = 没有户。
col-residents = 居民
col-tags = 标签
col-last-visit = 上次走访
col-next-due = 下次应访
col-note = 备注
col-tag = 标签
col-visit-every = 走访周期（天）
col-ticket-due = 办理时限（天）
household-due-now = 现在
household-visits = 走访记录：
household-tickets = 工单：
policy-days-invalid = “{ $days }”不是整天数
due-within-invalid = --within 须为 0 到 3650 的整天数，而不是“{ $given }”
due-never-visited = 从未走访
due-overdue = 已逾期 { $days } 天
due-today = 今天到期
due-in = { $days } 天后到期
due-households = 应走访的户（{ $now }）：
due-tickets = 快到期的工单：
due-none = 无。
