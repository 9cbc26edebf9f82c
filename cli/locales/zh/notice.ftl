# 信息发布（notice publish、list、read）。英文目录（../en/）有同样的消息和参数。

notice-station-only = 只有驿站可以发布通知
notice-published = 已发布通知 { $id }。
notice-marked-read = 已标记为已读：{ $title }
notice-none = 暂无通知。
notice-none-current = 暂无有效通知（加 --all 可查看已到期的通知）。
notice-read = 已读
notice-unread = 未读
notice-expired = 已到期
notice-whole-site = 全站
notice-no-end = 长期有效
notice-nobody = 暂无
notice-field-id = 编号
notice-field-published = 发布时间
notice-field-grids = 发布范围
notice-field-until = 有效期至
notice-field-read-by = 已读人员

notice-report-section = 八、信息发布
notice-report-none = 本时段未发布通知。
notice-report-col-title = 通知
notice-report-col-for = 发布范围
notice-report-col-readers = 已读
notice-report-col-of = 应读
notice-report-col-id = 编号

# 通知的字段名，用在错误提示和修改记录里（`output::label`）。
field-body = 正文
field-until = 有效期至
field-published_at = 发布时间
notice-grid-multiline = 网格名称只能写一行
kind-notice = 通知
