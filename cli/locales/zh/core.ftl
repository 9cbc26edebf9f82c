# 各命令共用的消息。每个部分另有自己的文件；英文目录（../en/）有同样的消息和参数。

error-line = 错误：{ $reason }
changes = { $count } 条修改
