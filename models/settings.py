"""Service settings, read from `TASKYARD_*` environment variables (see the README's table).

`api/`, `controller/` and the CLI each call `load_settings()`; tests build `Settings(...)` directly.
"""

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.paths import default_data_dir
from models.quantities import MIB, parse_size


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TASKYARD_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    database_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    image: str = "taskyard-runner:1"
    docker_runtime: str | None = None
    # "taskyard" (the packaged profile), "engine" (the engine's default), or a profile's path
    seccomp_profile: str = "taskyard"
    default_timeout_seconds: int = Field(default=30, ge=1)
    max_timeout_seconds: int = Field(default=600, ge=1)
    max_code_bytes: int = Field(default=MIB, ge=1)
    output_limit_bytes: int = Field(default=MIB, ge=1024)
    # What a task may bring in files, and what may come back from its `collect`.
    max_files_bytes: int = Field(default=8 * MIB, ge=0)
    collect_max_files: int = Field(default=32, ge=0)
    collect_max_bytes: int = Field(default=4 * MIB, ge=0)
    min_ram: str = "6MB"
    min_storage: str = "1MB"

    reserved_cpus: int = Field(default=0, ge=0)
    reserved_ram: str = "256MB"
    reserved_storage: str = "1GB"
    gpu_sharing: int = Field(default=1, ge=1)

    pids_limit: int = Field(default=256, ge=16)
    nofile_limit: int = Field(default=1024, ge=64)
    best_effort_cpu_quota: float = Field(default=1.0, gt=0)

    reconcile_interval_seconds: float = Field(default=1.0, gt=0)
    code_delivery_timeout_seconds: float = Field(default=10.0, gt=0)
    # The supervisor ends a code at its timeout; the controller kills the container this much
    # later where it has not (a supervisor that died with its sandbox, say).
    supervisor_deadline_grace_seconds: float = Field(default=2.0, ge=0)

    admin_token: str | None = None
    # False: task endpoints always need a token, even on loopback with no active user token.
    open_mode: bool = True
    allow_remote: bool = False
    # Host names (comma-separated, "*" for any) served in open mode besides loopback's.
    allowed_hosts: str = ""
    access_log: bool = True
    # "text" (one line a record) or "json" (one JSON object a line)
    log_format: Literal["text", "json"] = "text"
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    user_max_active_tasks: int = Field(default=100, ge=0)
    user_max_cpus: int = Field(default=0, ge=0)
    watch_heartbeat_seconds: float = Field(default=15.0, gt=0)
    watch_poll_seconds: float = Field(default=0.01, gt=0)
    transition_retention: int = Field(default=1_000_000, ge=1000)
    output_chunk_retention_seconds: float = Field(default=600.0, ge=0)
    stuck_grace_seconds: float = Field(default=30.0, gt=0)
    pending_stuck_seconds: float = Field(default=300.0, gt=0)
    controller_stale_seconds: float = Field(default=10.0, gt=0)
    warm_pool_size: int = Field(default=2, ge=0)
    warm_pool_idle_ram: str = "32MB"
    warm_pool_storage: str = "1GB"
    warm_pool_max_idle_seconds: float = Field(default=300.0, ge=10)

    @field_validator(
        "min_ram",
        "min_storage",
        "reserved_ram",
        "reserved_storage",
        "warm_pool_idle_ram",
        "warm_pool_storage",
    )
    @classmethod
    def _valid_size(cls, value: str) -> str:
        parse_size(value)
        return value

    @field_validator("seccomp_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in {"taskyard", "engine"} and not Path(value).is_file():
            raise ValueError(
                f"{value!r} is neither 'taskyard', 'engine' nor the path of a profile file"
            )
        return value

    @property
    def allowed_host_names(self) -> frozenset[str]:
        return frozenset(
            name.strip().lower() for name in self.allowed_hosts.split(",") if name.strip()
        )

    @cached_property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'taskyard.db'}"

    @property
    def min_ram_bytes(self) -> int:
        return parse_size(self.min_ram)

    @property
    def min_storage_bytes(self) -> int:
        return parse_size(self.min_storage)

    @property
    def reserved_ram_bytes(self) -> int:
        return parse_size(self.reserved_ram)

    @property
    def reserved_storage_bytes(self) -> int:
        return parse_size(self.reserved_storage)

    @property
    def warm_pool_idle_ram_bytes(self) -> int:
        return parse_size(self.warm_pool_idle_ram)

    @property
    def warm_pool_storage_bytes(self) -> int:
        return parse_size(self.warm_pool_storage)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags) on top."""
    given = {key: value for key, value in overrides.items() if value is not None}
    return Settings(**given)  # type: ignore[arg-type]
