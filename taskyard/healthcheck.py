"""`python -m taskyard.healthcheck`: the service image's HEALTHCHECK (deploy/Dockerfile).

Exits 0 where `GET /healthz` on this host's loopback (port `$TASKYARD_PORT`, else 8000)
answers `"status": "ok"`, 1 otherwise, printing why: Docker keeps the last lines in
`docker inspect`'s `.State.Health.Log`. Standard library only, so that it starts fast.
"""

import json
import os
import sys
import urllib.error
import urllib.request


def check(url: str, timeout: float = 4.0) -> str | None:
    """None where the service is healthy; else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            health = json.load(response)
    except urllib.error.HTTPError as exc:
        return f"{url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if health.get("status") == "ok":
        return None
    failing = {
        name: c.get("message") for name, c in health.get("checks", {}).items() if not c.get("ok")
    }
    return f"{url}: {health.get('status')}: {json.dumps(failing)}"


def main() -> int:
    url = f"http://127.0.0.1:{os.environ.get('TASKYARD_PORT', '8000')}/healthz"
    why = check(url)
    print(why or f"{url}: ok")
    return 0 if why is None else 1


if __name__ == "__main__":
    sys.exit(main())
