"""How the service verbs (`serve`, `api`, `controller`) write their log: to stderr, as text
lines or as one JSON object a line (`TASKYARD_LOG_FORMAT=json`, `--log-format json`).
`taskyard.cli` calls `configure_logging` once settings are read.

A JSON line has `time` (UTC, ISO 8601), `level`, `logger` and `message`, then whatever the
call passed in `extra`: the access log's `method`, `path`, `status`, `ms`, `token_id` and
`client`, and the controller's `task_id` where a line is about one task; an exception's
traceback is in `exc`. uvicorn's own lines go through the same handler (it is started with
`log_config=None`), so every line of the process has one format.
"""

import json
import logging
from datetime import UTC, datetime
from typing import Any

TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# uvicorn adds its message again with terminal colours.
_DROPPED = _STANDARD | {"color_message"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _DROPPED:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        return json.dumps(line, default=str, ensure_ascii=False)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    """Send every logger's records at `level` and above to stderr, in `log_format`."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(TEXT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
