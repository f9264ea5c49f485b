"""The seccomp profile of task containers, chosen by `TASKYARD_SECCOMP_PROFILE`.

`taskyard.json`, shipped here, is the default with runc: an allowlist in the engine's profile
format, written for unprivileged task containers. Unlike the engine's default it has no
capability-conditioned rules, so no capability reopens anything: unshare and setns always fail,
clone never takes a namespace flag, clone3 answers ENOSYS (its flags are out of a filter's
sight) and so does io_uring; AF_VSOCK sockets fail. `DockerRuntime` passes the chosen
profile's text to the engine (`security_opt seccomp=<json>`). gVisor's runsc ignores it unless
started with `--oci-seccomp`; its own kernel stands between the task and the host's.
"""

import json
from pathlib import Path

PACKAGED = Path(__file__).with_name("taskyard.json")
TASKYARD = "taskyard"  # the packaged profile
ENGINE = "engine"  # the engine's own default profile


class ProfileError(ValueError):
    """The setting names a profile that cannot be used."""


def load_profile(setting: str) -> str | None:
    """The profile's JSON text for the engine, or None for the engine's own default."""
    if setting == ENGINE:
        return None
    path = PACKAGED if setting == TASKYARD else Path(setting)
    try:
        profile = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ProfileError(f"cannot read the seccomp profile {path}: {exc}") from exc
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise ProfileError(f"{path} is not a seccomp profile: it has no defaultAction")
    return json.dumps(profile, separators=(",", ":"))
