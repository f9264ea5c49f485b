"""Where the service keeps its files: the data dir and the names in it that the CLI reads too.
Plain standard library, so that a client verb can find them without loading the settings.
"""

import os
from pathlib import Path

DATA_DIR_ENV = "TASKYARD_DATA_DIR"
# In the data dir: the address the last `taskyard serve` (or `api`) listens on, for the CLI.
SERVER_URL_FILE = "server-url"


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "taskyard"


def data_dir_of(given: str | Path | None = None) -> Path:
    """The data dir a command names (`--data-dir`), else `$TASKYARD_DATA_DIR`, else the
    default (under `$XDG_DATA_HOME`): the service's own rule, for the verbs that look in it."""
    if given:
        return Path(given)
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV])
    return default_data_dir()
