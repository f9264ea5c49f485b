"""The docker SDK's private parts that taskyard relies on, fenced in this one module.

docker-py offers no public way to do these two things:
- `update_limits`: its `update_container` cannot set NanoCpus, and the engine refuses a CPU
  period or quota on a container created with NanoCpus (409 "Conflicting options"), so a warm
  container's limits are posted to the engine's endpoint through `_post_json`, `_url` and
  `_raise_for_status`.
- `attach_stdin`: `attach_socket` returns a `socket.SocketIO`. Closing that alone leaves the
  attach open, so the container's stdin never ends; the socket beneath it (`_sock`) is what
  ends it, and what takes a send timeout and non-blocking writes.

`PRIVATE_CALLS` names what is used; tests/unit/test_engine_wire.py fails when docker-py changes
any of it, and tests/e2e/test_engine_wire.py checks on the real engine that it still works.
Called by `controller.docker_runtime` and `controller.warm_containers`.
"""

import socket
from collections.abc import Callable
from typing import Any

# APIClient methods (with the parameters used) and attributes of what they return.
PRIVATE_CALLS = {
    "APIClient._url": ("pathfmt", "args"),
    "APIClient._post_json": ("url", "data"),
    "APIClient._raise_for_status": ("response",),
    "SocketIO._sock": (),
}


def update_limits(api: Any, name: str, limits: dict[str, int | str]) -> None:
    """Set a container's resource limits with the engine's field names (NanoCpus and all)."""
    response = api._post_json(api._url("/containers/{0}/update", name), data=limits)
    api._raise_for_status(response)


def attach_stdin(api: Any, name: str) -> tuple[socket.socket, Callable[[], None]]:
    """An attach to the container's stdin: the socket to write it through, and what closes
    docker-py's side of it. Closing both ends the attach, and so (with StdinOnce) the
    container's stdin."""
    attached = api.attach_socket(name, params={"stdin": 1, "stream": 1})
    raw: socket.socket = attached._sock
    return raw, attached.close
