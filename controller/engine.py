"""The connection to the Docker engine, shared by every thread that talks to it.

`DockerRuntime` on the reconcile pass, the warm pool's fill threads, the kill and removal
threads and the events follower all take the client from here. The client is made on first
use; `forget` drops it once the engine is found gone, so the next use connects anew. Both hold a
lock only to swap the client, never while talking to the engine, so a thread that took the
client keeps a usable one while another forgets it.
"""

import threading
from collections.abc import Callable

import docker

from controller.engine_errors import engine_call

# Every call but the streams (followed output, events) gives up after this.
CLIENT_TIMEOUT_SECONDS = 30


def from_env() -> docker.DockerClient:
    """The engine that `DOCKER_HOST` (or the default socket) names."""
    return docker.from_env(timeout=CLIENT_TIMEOUT_SECONDS)


class EngineConnection:
    """One docker client at a time, made by `connect` when first needed."""

    def __init__(self, connect: Callable[[], docker.DockerClient] = from_env) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._client: docker.DockerClient | None = None

    def client(self) -> docker.DockerClient:
        """The client; raises `RuntimeUnavailable` where the engine cannot be reached."""
        with self._lock:
            client = self._client
        if client is not None:
            return client
        # Connecting asks the engine its API version: not under the lock.
        with engine_call("reach the Docker engine"):
            made = self._connect()
        with self._lock:
            if self._client is None:
                self._client = made
            return self._client

    def forget(self) -> None:
        """Drop the client: the next `client()` connects again."""
        with self._lock:
            self._client = None
