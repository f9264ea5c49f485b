"""The admin bearer token: `TASKYARD_ADMIN_TOKEN`, or one generated at first start and kept in
`<data dir>/admin-token` with mode 0600. The service and the CLI both find it here.
"""

import os
import secrets
from pathlib import Path

from models.settings import Settings

TOKEN_FILE = "admin-token"


def admin_token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def ensure_admin_token(settings: Settings) -> tuple[str, Path | None]:
    """The admin token, and the file it lives in (None when it comes from the environment)."""
    if settings.admin_token:
        return settings.admin_token, None
    path = admin_token_path(settings)
    if path.exists():
        return path.read_text().strip(), path
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL: two processes starting at once agree on the first one's token.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip(), path
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token, path
