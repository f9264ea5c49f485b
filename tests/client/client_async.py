"""Running a client coroutine to its end from a synchronous test.

`asyncio.run` refuses to start where an event loop already runs in this thread, as Playwright's
sync API leaves one while the browser tests' session fixtures are alive; a thread of its own
has none, whichever tests ran before.
"""

import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def run_async(coroutine: Coroutine[Any, Any, T]) -> T:
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()
