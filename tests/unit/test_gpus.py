"""GPU discovery through NVML, with a fake NVML module and with the real one on this host."""

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from controller.gpus import GpuInfo, discover_gpus

GIB = 1024 * 1024 * 1024


class FakeNvmlError(Exception):
    pass


class FakeNvml:
    """The functions of pynvml that discovery calls, over a fixed list of devices."""

    def __init__(
        self,
        devices: list[tuple[bytes | str, bytes | str, int]],
        *,
        init_error: Exception | None = None,
        fail_on: str | None = None,
        shutdown_error: Exception | None = None,
    ) -> None:
        self.devices = devices
        self.init_error = init_error
        self.fail_on = fail_on
        self.shutdown_error = shutdown_error
        self.initialised = False
        self.shutdowns = 0

    def _call(self, name: str) -> None:
        assert self.initialised, f"{name} called before nvmlInit"
        if self.fail_on == name:
            raise FakeNvmlError(f"{name} failed")

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            raise self.init_error
        self.initialised = True

    def nvmlDeviceGetCount(self) -> int:
        self._call("nvmlDeviceGetCount")
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        self._call("nvmlDeviceGetHandleByIndex")
        return 100 + index

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> Any:
        self._call("nvmlDeviceGetMemoryInfo")
        return SimpleNamespace(total=self.devices[handle - 100][2], free=0, used=0)

    def nvmlDeviceGetName(self, handle: int) -> bytes | str:
        self._call("nvmlDeviceGetName")
        return self.devices[handle - 100][0]

    def nvmlDeviceGetUUID(self, handle: int) -> bytes | str:
        self._call("nvmlDeviceGetUUID")
        return self.devices[handle - 100][1]

    def nvmlShutdown(self) -> None:
        self.shutdowns += 1
        if self.shutdown_error is not None:
            raise self.shutdown_error


TWO_GPUS: list[tuple[bytes | str, bytes | str, int]] = [
    (b"NVIDIA H100 80GB HBM3", b"GPU-11111111-2222-3333-4444-555555555555", 80 * GIB),
    ("NVIDIA A10", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", 24 * GIB),
]


def test_two_gpus_are_discovered_with_names_uuids_and_memory() -> None:
    nvml = FakeNvml(TWO_GPUS)
    gpus, message = discover_gpus(nvml=nvml)
    assert gpus == [
        GpuInfo(0, "NVIDIA H100 80GB HBM3", "GPU-11111111-2222-3333-4444-555555555555", 80 * GIB),
        GpuInfo(1, "NVIDIA A10", "GPU-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", 24 * GIB),
    ]
    assert message == "NVML sees 2 GPU(s)"
    assert nvml.shutdowns == 1


def test_no_devices_means_no_gpus() -> None:
    gpus, message = discover_gpus(nvml=FakeNvml([]))
    assert gpus == []
    assert message == "NVML sees 0 GPU(s)"


def test_nvml_that_cannot_start_means_no_gpus_and_says_why() -> None:
    nvml = FakeNvml(TWO_GPUS, init_error=FakeNvmlError("Driver Not Loaded"))
    gpus, message = discover_gpus(nvml=nvml)
    assert gpus == []
    assert "Driver Not Loaded" in message
    assert "without GPUs" in message


def test_missing_library_means_no_gpus() -> None:
    nvml = FakeNvml(TWO_GPUS, init_error=OSError("libnvidia-ml.so.1: cannot open shared object"))
    gpus, message = discover_gpus(nvml=nvml)
    assert gpus == []
    assert "libnvidia-ml.so.1" in message


def test_failure_while_listing_means_no_gpus_and_nvml_is_shut_down() -> None:
    nvml = FakeNvml(TWO_GPUS, fail_on="nvmlDeviceGetMemoryInfo")
    gpus, message = discover_gpus(nvml=nvml)
    assert gpus == []
    assert "nvmlDeviceGetMemoryInfo failed" in message
    assert nvml.shutdowns == 1


def test_failing_shutdown_does_not_lose_the_gpus() -> None:
    nvml = FakeNvml(TWO_GPUS, shutdown_error=FakeNvmlError("shutdown failed"))
    gpus, message = discover_gpus(nvml=nvml)
    assert [gpu.index for gpu in gpus] == [0, 1]
    assert message == "NVML sees 2 GPU(s)"


def test_real_nvml_on_this_host_does_not_raise() -> None:
    gpus, message = discover_gpus()
    if Path("/proc/driver/nvidia").exists():
        assert gpus, message
        assert message == f"NVML sees {len(gpus)} GPU(s)"
        assert all(gpu.memory_bytes > 0 and gpu.uuid.startswith(("GPU-", "MIG-")) for gpu in gpus)
    else:
        assert gpus == []
        assert "without GPUs" in message or "not installed" in message
