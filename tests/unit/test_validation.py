"""The seed's request validation, through `TaskCreate.model_validate` as the API applies it.

Every rejected body must raise `pydantic.ValidationError` whose error `loc` names the field, so
that the 422 `detail` tells the client what to fix.
"""

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from models.schemas import TaskCreate, TaskType

# The seed's README examples, verbatim.
EXAMPLE_1 = json.loads("""
{
    "task_type": "execute_code",
    "code": "print('Hello, World!')",
    "resources": {
        "cpu": "2",
        "gpu": "0",
        "ram": "512MB",
        "storage": "1GB"
    }
}
""")
EXAMPLE_2 = json.loads("""
{
    "task_type": "execute_code",
    "code": "for i in range(5): print(f'Count {i}')",
    "resources": {
        "cpu": "1",
        "gpu": "0",
        "ram": "256MB",
        "storage": "500MB"
    }
}
""")


def body(**changes: Any) -> dict[str, Any]:
    """Example 1 with top-level fields replaced; a value of `...` removes the field."""
    result = copy.deepcopy(EXAMPLE_1)
    for key, value in changes.items():
        if value is ...:
            del result[key]
        else:
            result[key] = value
    return result


def resources(**changes: Any) -> dict[str, Any]:
    """Example 1 with fields of `resources` replaced; a value of `...` removes the field."""
    result = copy.deepcopy(EXAMPLE_1)
    for key, value in changes.items():
        if value is ...:
            del result["resources"][key]
        else:
            result["resources"][key] = value
    return result


def error_locs(data: dict[str, Any]) -> list[tuple[str | int, ...]]:
    with pytest.raises(ValidationError) as info:
        TaskCreate.model_validate(data)
    return [tuple(error["loc"]) for error in info.value.errors()]


def test_seed_example_1_passes() -> None:
    task = TaskCreate.model_validate(EXAMPLE_1)
    assert task.task_type is TaskType.execute_code
    assert task.code == "print('Hello, World!')"
    assert task.resources.cpu_count == 2
    assert task.resources.gpu_count == 0
    assert task.resources.ram_bytes == 512 * 1024 * 1024
    assert task.resources.storage_bytes == 1024 * 1024 * 1024
    assert task.timeout_seconds is None
    assert task.stdin is None


def test_seed_example_2_passes() -> None:
    task = TaskCreate.model_validate(EXAMPLE_2)
    assert task.code == "for i in range(5): print(f'Count {i}')"
    assert task.resources.cpu_count == 1
    assert task.resources.ram_bytes == 256 * 1024 * 1024
    assert task.resources.storage_bytes == 500 * 1024 * 1024


def test_optional_fields_are_accepted() -> None:
    task = TaskCreate.model_validate(body(timeout_seconds=5, stdin="3\n"))
    assert task.timeout_seconds == 5
    assert task.stdin == "3\n"


def test_explicit_nulls_for_optional_fields_are_accepted() -> None:
    task = TaskCreate.model_validate(body(timeout_seconds=None, stdin=None))
    assert task.timeout_seconds is None
    assert task.stdin is None


def test_sizes_are_kept_as_written_and_parsed_in_any_case() -> None:
    task = TaskCreate.model_validate(resources(ram="1gb", storage="2Gb"))
    assert (task.resources.ram, task.resources.storage) == ("1gb", "2Gb")
    assert (task.resources.ram_bytes, task.resources.storage_bytes) == (1 << 30, 2 << 30)


@pytest.mark.parametrize(
    ("data", "loc"),
    [
        pytest.param(body(task_type="run_code"), ("task_type",), id="unknown-task-type"),
        pytest.param(body(task_type="EXECUTE_CODE"), ("task_type",), id="task-type-wrong-case"),
        pytest.param(body(task_type=None), ("task_type",), id="task-type-null"),
        pytest.param(body(task_type=...), ("task_type",), id="task-type-missing"),
        pytest.param(body(code=...), ("code",), id="code-missing"),
        pytest.param(body(code=None), ("code",), id="code-null"),
        pytest.param(body(code=123), ("code",), id="code-integer"),
        pytest.param(body(code=["print(1)"]), ("code",), id="code-list"),
        pytest.param(body(code=b"print(1)"), ("code",), id="code-bytes"),
        pytest.param(body(code="\ud800"), ("code",), id="code-lone-surrogate"),
        pytest.param(body(code="print('a\udfff')"), ("code",), id="code-low-surrogate"),
        pytest.param(body(stdin="\ud800"), ("stdin",), id="stdin-lone-surrogate"),
        pytest.param(body(stdin=5), ("stdin",), id="stdin-integer"),
        pytest.param(body(resources=...), ("resources",), id="resources-missing"),
        pytest.param(body(resources="2 cpus"), ("resources",), id="resources-string"),
        pytest.param(body(timeout_seconds="30"), ("timeout_seconds",), id="timeout-string"),
        pytest.param(body(timeout_seconds=True), ("timeout_seconds",), id="timeout-bool"),
        pytest.param(body(timeout_seconds=30.0), ("timeout_seconds",), id="timeout-whole-float"),
        pytest.param(body(timeout_seconds=2.5), ("timeout_seconds",), id="timeout-float"),
        pytest.param(body(priority=1), ("priority",), id="unknown-top-level-field"),
        pytest.param(resources(cpu=2), ("resources", "cpu"), id="cpu-json-integer"),
        pytest.param(resources(gpu=0), ("resources", "gpu"), id="gpu-json-integer"),
        pytest.param(resources(cpu="-1"), ("resources", "cpu"), id="cpu-negative"),
        pytest.param(resources(cpu="1.5"), ("resources", "cpu"), id="cpu-fraction"),
        pytest.param(resources(cpu=" 2"), ("resources", "cpu"), id="cpu-leading-space"),
        pytest.param(resources(cpu="two"), ("resources", "cpu"), id="cpu-word"),
        pytest.param(resources(cpu=""), ("resources", "cpu"), id="cpu-empty"),
        pytest.param(resources(cpu="٣"), ("resources", "cpu"), id="cpu-arabic-indic-digit"),
        pytest.param(resources(gpu="-1"), ("resources", "gpu"), id="gpu-negative"),
        pytest.param(resources(cpu=...), ("resources", "cpu"), id="cpu-missing"),
        pytest.param(resources(gpu=...), ("resources", "gpu"), id="gpu-missing"),
        pytest.param(resources(ram=...), ("resources", "ram"), id="ram-missing"),
        pytest.param(resources(storage=...), ("resources", "storage"), id="storage-missing"),
        pytest.param(resources(ram="512"), ("resources", "ram"), id="ram-no-unit"),
        pytest.param(resources(ram="512KB"), ("resources", "ram"), id="ram-kilobytes"),
        pytest.param(resources(ram="1.5GB"), ("resources", "ram"), id="ram-fraction"),
        pytest.param(resources(ram="GB"), ("resources", "ram"), id="ram-unit-only"),
        pytest.param(resources(ram="1 GB"), ("resources", "ram"), id="ram-space"),
        pytest.param(resources(ram="-1MB"), ("resources", "ram"), id="ram-negative"),
        pytest.param(resources(ram=512), ("resources", "ram"), id="ram-json-integer"),
        pytest.param(resources(storage="1TB"), ("resources", "storage"), id="storage-terabytes"),
        pytest.param(resources(storage="1 GB"), ("resources", "storage"), id="storage-space"),
        pytest.param(resources(disk="1GB"), ("resources", "disk"), id="unknown-resource"),
    ],
)
def test_invalid_body_names_the_field(data: dict[str, Any], loc: tuple[str, ...]) -> None:
    assert loc in error_locs(data)


def test_every_missing_field_is_named() -> None:
    locs = error_locs({})
    assert {("task_type",), ("code",), ("resources",)} <= set(locs)


def test_surrogate_error_says_what_is_wrong() -> None:
    with pytest.raises(ValidationError) as info:
        TaskCreate.model_validate(body(code="print(1)\ud800"))
    [error] = info.value.errors()
    assert error["loc"] == ("code",)
    assert "surrogate" in error["msg"]


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("print('a\\x00b')\x00", id="nul-byte"),
        pytest.param("print('שלום עולם')  # \u202eevil\u202c", id="rtl-text-and-override"),
        pytest.param("print('e\u0301\u0302\u0303')", id="combining-characters"),
        pytest.param("print('👩\u200d💻')", id="emoji-zwj-sequence"),
        pytest.param("", id="empty"),
    ],
)
def test_unusual_but_valid_text_in_code_is_accepted(code: str) -> None:
    assert TaskCreate.model_validate(body(code=code)).code == code


def test_unusual_but_valid_text_in_stdin_is_accepted() -> None:
    stdin = "\x00שלום\u0301\n"
    assert TaskCreate.model_validate(body(stdin=stdin)).stdin == stdin


def test_body_from_json_text_with_escaped_lone_surrogate_is_rejected() -> None:
    # What a client actually sends: JSON text with a "\ud800" escape, which the API decodes
    # with the standard json module (as FastAPI does) before validating.
    text = json.dumps(body(code="x = 1")).replace("x = 1", "x = '\\ud800'")
    assert "\\ud800" in text
    with pytest.raises(ValidationError) as info:
        TaskCreate.model_validate(json.loads(text))
    assert ("code",) in [tuple(error["loc"]) for error in info.value.errors()]
