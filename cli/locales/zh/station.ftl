# 驿站负责人的命令：成员、隔离区、同步与服务、配置、工作报告。
# 与英文目录（../en/station.ftl）的消息编号和参数一一对应。

## members

members-col-name = 名称
members-col-role = 角色
members-col-grids = 网格
members-col-expires = 有效期
members-col-last-sync = 最后同步
members-col-status = 状态
members-col-device = 设备
members-role = { $role ->
    [station] 驿站
    [volunteer] 网格员
    [district] 街道
   *[other] { $role }
}
members-expires-never = 长期
members-never-synced = 从未同步
members-status-revoked = 已撤销
members-status-expired = 已过期
members-status-active = 正常
members-none = 还不知道任何成员（本机尚未加入驿站）。

## quarantine

quarantine-none = 隔离区里没有待定的修改。
quarantine-change = 待定修改 { $id }
quarantine-kind = { $kind ->
    [visit] 走访
    [ticket] 工单
    [household] 住户
    [policy] 规则
   *[other] 记录
}
quarantine-key-record = 记录
quarantine-key-author = 作者
quarantine-key-made = 修改时间
quarantine-key-received = 收到时间
quarantine-key-writes = 内容
quarantine-key-waits = 依赖
quarantine-key-why = 隔离原因
quarantine-author-revoked = { $name }（{ $at } 已撤销：{ $reason }）
quarantine-author-revoked-no-reason = { $name }（{ $at } 已撤销）
quarantine-writes-nothing = 无（仅记录自身的登记）
quarantine-waits-nothing = 无待定依赖
quarantine-waits-held = { $id }（同在隔离区）
quarantine-removed = （已删除）
quarantine-reason-revoked = 驿站收到之前，作者已被撤销
quarantine-reason-builds-on = 它所依据的修改也在隔离区中
quarantine-accepted = 已合并 { $count } 条待定修改。
quarantine-rejected = 已永久丢弃 { $count } 条待定修改。
quarantine-waits-for = 修改 { $change } 依据的待定修改 { $waits } 没有一并接受，所以什么也没有合并：请先接受那一条（`yizhan quarantine accept { $first }`），再接受这一条；或用 `yizhan quarantine accept --all` 一并接受
quarantine-not-merged = 修改 { $change } 没有合并：它依据的修改本站还没有收到；收到之前，它留在隔离区
quarantine-held-record = { $kind ->
    [visit] 走访
    [ticket] 工单
   *[other] 记录
} { $id } 在隔离区中待定：作者 { $author } 已于 { $at } 被撤销，之后驿站才收到{ $count ->
    [one] 这条修改
   *[other] 它的 { $count } 条修改
}；见 `yizhan quarantine list`

## sync and serve

addr-not-host-port = “{ $addr }”不是“主机:端口”形式的地址
addr-unresolved = 找不到“{ $addr }”中的主机“{ $host }”（无法解析这个名称：请检查拼写和网络）
sync-no-station = 不知道驿站的地址：请给出“主机:端口”，或在加入时用 --station 主机:端口
sync-spinner = 正在与 { $addr } 同步
sync-progress = 正在与 { $addr } 同步：已发出 { $sent } 条修改，收到 { $received } 条
sync-done = 已与 { $addr } 同步：发出 { $sent } 条修改，收到 { $received } 条，拒收 { $rejected } 条（发送 { $bytes_out } 字节，接收 { $bytes_in } 字节，往返 { $trips } 次）。
# `serve` 的第一行供脚本读取，各语言相同。
serve-listening = listening on { $addr }
serve-synced = 已与 { $peer } 同步：发出 { $sent } 条修改，收到 { $received } 条，拒收 { $rejected } 条
serve-found = 在附近发现 { $peer }：{ $addrs }
serve-ignored = 忽略附近的 { $who }：{ $reason }
serve-a-node = 一个节点
serve-failed = 同步失败：{ $error }
serve-failed-with = 与 { $peer } 同步失败：{ $error }
serve-runtime = 无法启动异步运行时
serve-stopped = 后台服务意外停止

## config

config-col-setting = 设置
config-col-value = 值
config-col-from = 来源
config-source = { $source ->
    [default] 默认
    [file] 配置文件
    [join] 加入时给出
   *[flag] 命令行参数
}
config-file = 配置文件：{ $path }
config-file-missing = 配置文件：{ $path }（不存在）
config-bad-value = 配置文件 { $path } 中的 { $key } = { $value }

## report

report-title = 幸福驿站工作报告
report-period = { $since } 至 { $until }
report-period-line = 统计时段：{ $period }（含起点，不含终点）
report-first-record = 最早记录
report-generated = 生成时间：{ $at }
report-made-on = 生成节点：{ $name }（{ $role }）
report-note = 注意：
report-not-station = 本机不是驿站，报告只含本机保存的记录；网格员同步情况指与本机的同步。
report-partial = 注意：本机不是驿站，报告只含本机保存的记录
report-cannot-write = 无法写入 { $path }
report-cannot-draw = 无法绘制图表：{ $reason }
report-written = 报告已写入 { $path }。
report-attention = 需要注意
report-quarantine = 隔离区：
report-held = 有 { $count } 条已撤销成员的修改等待驿站决定（`yizhan quarantine list`）。
report-revoked-devices = 已撤销的设备
report-col-member = 成员
report-col-revoked-at = 撤销时间
report-col-reason = 原因
report-summary = 概览
report-col-figure = 指标
report-col-value = 数值
report-visits = 走访
report-tickets-opened = 新开工单
report-tickets-resolved = 办结工单
report-still-open = 截至期末未结
report-median = 办结用时中位数
report-not-synced-count = 超过 { $days } 天未同步的网格员
report-not-synced-card = 未同步网格员
report-sec-visits = 一、走访
report-by-grid = 按网格
report-by-category = 按服务类别
report-by-volunteer = 按网格员
report-col-grid = 网格
report-col-grids = 网格
report-col-category = 类别
report-col-volunteer = 网格员
report-col-visits = 走访
report-col-tickets = 工单
report-total = 合计
report-sec-tickets = 二、工单
report-col-opened = 新开
report-col-resolved = 办结
report-col-open = 未结
report-sec-not-synced = 三、超过 { $days } 天未同步的网格员
report-all-synced = 无。每位网格员都在 { $days } 天内同步过。
report-col-last-sync = 上次同步
report-col-days = 未同步天数
report-never = 从未
report-sec-grids = 四、网格
report-grids-note = 覆盖：期末时最近一次走访仍在走访周期内的住户。按期：首次办结不晚于办结期限。
report-col-households = 住户
report-col-covered = 已覆盖
report-col-on-time = 按期办结
report-col-rated = 回访
report-col-satisfied = 满意
report-col-overdue-tickets = 期末逾期工单
report-sec-volunteers = 五、网格员
report-sec-channels = 六、工单来源
report-col-channel = 渠道
report-sec-overdue = 七、期末逾期
report-col-item = 项目
report-col-count = 数量
report-overdue-households = 逾期未走访住户
report-overdue-tickets = 逾期未办结工单
report-list-of = { $title }：
report-more = …… 另有 { $count } 项（`--json`）
report-none = 无
report-end = 期末
report-uncategorised = 未分类
report-no-grid = 未分网格
report-not-in-roster = { $id }（不在花名册中）
report-days-hours = { $days } 天 { $hours } 小时
report-hours-minutes = { $hours } 小时 { $minutes } 分钟
report-minutes = { $minutes } 分钟
report-footer = 走访按走访时间计入时段；工单的办结时间取自其签名变更的时间。yizhan { $version }
