"""Check, before ``ray job submit``, that ``RAY_ADDRESS`` is a Ray job server that answers and accepts this shell.

    python recipes/common/job_server.py http://HEAD:8265    # exit 0: it answers; exit 2: one line saying why

- ``http(s)://HOST:PORT``: ``GET /api/version`` within 5 s, with Ray's token (``RAY_AUTH_TOKEN``, the file named by
  ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``, as Ray itself reads it) as a bearer token when one is there. A
  head with token auth answers 401 without a token and 403 with a wrong one: both are named, with the fix, and so
  is a token without ``RAY_AUTH_MODE=token``, with which the ``ray`` CLI would not send it.
- ``HOST:PORT`` (the GCS address ``ray start`` prints) and ``ray://`` (Ray Client): ``ray job submit`` needs the job
  server's HTTP address; Ray would try the other forms for about 40 s and end in a traceback.

Standard library only: it runs in the submitting shell before anything imports Ray.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

TIMEOUT_S = 5


def ray_auth_token() -> str | None:
    """Ray's auth token as Ray's own client finds it (environment, then the token file), or None."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip()
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def problem(address: str) -> str | None:
    """What is wrong with ``address`` as a job server (one line), or None when it answers and accepts us."""
    if address.startswith("ray://") or "://" not in address:
        host = address.removeprefix("ray://").rsplit(":", 1)[0] or "HEAD"
        return (f"RAY_ADDRESS={address} is not the job server: `ray job submit` needs its HTTP address, "
                f"e.g. RAY_ADDRESS=http://{host}:8265 (the dashboard port; {address} is the "
                f"{'Ray Client' if address.startswith('ray://') else 'GCS'} address)")
    if not address.startswith(("http://", "https://")):
        return f"RAY_ADDRESS={address}: not an http(s) address; the job server is e.g. http://HEAD:8265"
    request = urllib.request.Request(address.rstrip("/") + "/api/version")
    token = ray_auth_token()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code == 401:
            return (f"RAY_ADDRESS={address} requires Ray's token auth and this shell has no token: copy the head's "
                    "~/.ray/auth_token here, or export RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH)")
        if error.code == 403:
            return (f"RAY_ADDRESS={address} rejects this shell's Ray token: use the head's token "
                    "(its ~/.ray/auth_token) in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
        return f"RAY_ADDRESS={address} answered HTTP {error.code} at /api/version: is it Ray's job server?"
    except Exception as error:  # refused, timed out, unresolvable: one line, not a traceback
        return (f"RAY_ADDRESS={address} does not answer within {TIMEOUT_S} s ({error}): start the cluster's head "
                "(ray start --head --dashboard-host=...) or fix the address (the job server, usually http://HEAD:8265)")
    if token and os.environ.get("RAY_AUTH_MODE", "").lower() != "token" and _needs_token(address):
        return (f"RAY_ADDRESS={address} uses Ray's token auth: export RAY_AUTH_MODE=token as well (the ray CLI "
                "sends the token only then)")
    return None


def _needs_token(address: str) -> bool:
    """Whether the job server refuses a request without a token (a head with token auth)."""
    try:
        urllib.request.urlopen(address.rstrip("/") + "/api/version", timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        return error.code == 401
    except Exception:
        return False
    return False


def main() -> None:
    found = problem(sys.argv[1])
    if found:
        print(f"[etr-recipe] error: {found}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
