# 各命令共用的消息。每个部分另有自己的文件；英文目录（../en/）有同样的消息和参数。

error-line = 错误：{ $reason }
changes = { $count } 条修改

## 加密存储的口令
passphrase-prompt = 口令：
passphrase-again = 再输一遍口令：
passphrase-needed = 需要口令：请设置 YIZHAN_PASSPHRASE，或在终端中运行
passphrase-unreadable = 无法读取口令：{ $reason }
passphrases-differ = 两次输入的口令不一致
home-empty = --home 不能为空
home-none = 找不到主目录：请用 --home DIR 指定，或设置 YIZHAN_HOME

## 角色
role-station = 驿站
role-volunteer = 网格员
role-district = 街道
role-unenrolled = 未加入

## 字段名（show 和修改历史里）
field-id = 编号
field-device = 设备
field-name = 名称
field-role = 角色
field-site = 站点
field-grids = 网格
field-household = 户
field-household_id = 户编号
field-grid = 网格
field-category = 类别
field-visited_at = 走访时间
field-residents = 居民
field-needs = 诉求
field-note = 备注
field-author = 记录人
field-tickets = 工单
field-title = 标题
field-status = 状态
field-priority = 优先级
field-assignee = 承办人
field-opened_by = 登记人
field-opened_at = 登记时间
field-channel = 来源渠道
field-due = 办理时限
field-resolved_at = 办结时间
field-satisfaction = 回访评价
field-rated_at = 回访时间
field-visits = 走访
field-address = 地址
field-tags = 标签
field-phone = 电话
field-added_at = 建档时间
field-last_visit = 上次走访
field-next_due = 下次应访
field-records = 记录
field-at-station = 驿站确认
field-conflicts = 冲突
field-rejected = 拒收
field-dropped = 已移除
field-misbehaviour = 异常行为
field-comments = 跟进记录

## 表头
col-id = 编号
col-visited = 走访时间
col-household = 户
col-grid = 网格
col-category = 类别
col-author = 记录人
col-opened = 登记时间
col-due = 办理时限
col-status = 状态
col-priority = 优先级
col-title = 标题
col-assignee = 承办人
col-at = 时间
col-text = 内容
col-field = 字段
col-values = 各方的值
col-value = 值
col-record = 记录
col-kind = 类型
col-change = 操作
col-what = 内容
col-device = 设备
col-name = 名称
col-address = 地址
col-last-sync = 最后同步

## 身份
init-done = 已在 { $home } 建立节点“{ $name }”。
id-no-site = -（尚未加入站点）
enroll-done = 已接纳 { $name }（{ $device }）。把下面这行令牌交给该设备，在设备上运行 `yizhan join 令牌`：
token-invalid = 令牌无效：{ $reason }
join-done = 已以{ $role }身份加入站点 { $site }，网格：{ $grids }。
revoke-done = 已吊销 { $device }。吊销通知送达后，各成员即拒绝与它同步。

## 记录
saved-visit = 已保存走访记录 { $id }。
saved-ticket = 已保存工单 { $id }。
saved-comment = 已在工单 { $id } 上添加跟进记录。
saved-household = 已保存户 { $id }。
no-visits = 没有走访记录。
no-tickets = 没有工单。
overdue-mark = { $when }（已逾期）
comments-heading = 跟进记录：
history-heading = 修改历史：
history-none = （无）
history-removed = （已删除）
conflicts-in-record = 冲突（多人同时修改；显示的是第一个值）：
member-unknown = 没有名为“{ $given }”或编号以它开头的成员
member-ambiguous = 有 { $count } 位成员叫“{ $given }”：请给出设备编号（{ $ids }）
note-file-unreadable = 无法读取 { $file }：{ $reason }
note-file-not-text = { $file } 不是 UTF-8 文本

## 修改历史中的操作
verb-add-visit = 新增走访
verb-edit-visit = 修改走访
verb-open-ticket = 登记工单
verb-update-ticket = 更新工单
verb-comment = 跟进
verb-add-household = 新建户
verb-edit-household = 修改户
verb-set-policy = 设置规则
verb-resolve = 解决冲突
verb-link-household = 关联户

## 状态
status-records = 走访 { $visits } 条，工单 { $tickets } 件
status-this-is-station = 本机就是驿站
status-not-confirmed = 驿站尚未确认；{ $pending } 条修改待同步
status-confirmed = 驿站已确认（{ $at }）；{ $pending } 条修改待同步
status-none = 无
status-dropped = 已移除 { $count } 条离开本机网格的记录
status-misbehaviour = 记录了 { $count } 次；最近一次：{ $device } 的 { $kind }（{ $detail }）
status-peers = 同步对象：
status-never = 从未同步

## 校验
verify-done = 已校验 { $count } 条修改：{ $bad ->
    [0] 全部正常
   *[other] { $bad } 条有问题
}。
verify-problems = 校验发现 { $count } 个问题：{ $shown }

## 冲突与解决
no-conflicts = 没有冲突。
conflicts-summary = 共 { $count } 个字段有冲突，每个字段显示的是第一个值。用 yizhan resolve 编号 字段 值 来确定其一
resolve-done = 已确定 { $id } 的{ $field }：本机现在是“{ $value }”，各节点同步后也一样。
record-ambiguous = “{ $prefix }”有歧义：同时匹配一条走访和一件工单，请多给几位
record-none = 没有走访或工单匹配“{ $prefix }”
record-malformed = “{ $prefix }”不是记录编号

## 记录类型
kind-visit = 走访
kind-ticket = 工单
kind-household = 户
kind-policy = 规则

## 进度
progress-rows = 行
note-file-too-long = { $file } 超过了记录文本的上限（{ $max } 字节）
field-comment = 跟进
kind-device = 设备
kind-quarantined-change = 隔离的修改

## 命令写法错误（后面附 clap 的英文说明）
usage-error = 错误：{ $what }：{ $detail }
usage-unknown-argument = 没有这个选项
usage-unknown-command = 没有这个命令
usage-bad-value = 选项的值不对
usage-missing-argument = 缺少必填的选项
usage-missing-command = 缺少命令
usage-conflict = 这几个选项不能一起用
usage-other = 命令写法不对
field-tag = 标签
