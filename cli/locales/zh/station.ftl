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
quarantine-waits-for = 修改 { $change } 依据的待定修改 { $waits } 没有一并接受，所以什么也没有合并：请先接受 { $waits }（`yizhan quarantine accept { $first }`），再接受这一条；或用 `yizhan quarantine accept --all` 一并接受
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
