"""recipes/common/job_server.py, the check submit.sh makes before ``ray job submit``, against an HTTP server on
loopback that answers as Ray's job server does with token auth on (401 without a token, 403 with a wrong one). The
same check against a live token-auth Ray head is in tests/test_two_hosts_submit.py."""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from etr_testkit import user_env

# not run on the other verl releases by `make test-versions`: the submit script's address check
pytestmark = pytest.mark.verl_independent

ROOT = Path(__file__).resolve().parents[1]
CHECK = ROOT / "recipes" / "common" / "job_server.py"
TOKEN = "a" * 32


class _TokenAuthJobServer(BaseHTTPRequestHandler):
    """``GET /api/version``: 200 with ``Bearer TOKEN``, 401 without a token, 403 with another."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        sent = self.headers.get("Authorization")
        code = 200 if sent == f"Bearer {TOKEN}" else 401 if sent is None else 403
        self.send_response(code)
        self.end_headers()
        self.wfile.write(b'{"ray_version": "test"}' if code == 200 else b"unauthorized")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def token_head():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenAuthJobServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def check(address: str, home: Path, **env: str) -> subprocess.CompletedProcess:
    """The check as submit.sh runs it, in a user's shell whose home is ``home`` (its ~/.ray/auth_token)."""
    clean = {k: v for k, v in user_env(HOME=str(home), **env).items()
             if k not in {"RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"} or k in env}
    return subprocess.run([sys.executable, str(CHECK), address], env=clean, capture_output=True, text=True,
                          timeout=60)


def test_without_a_token_one_line_says_where_to_get_it(token_head, tmp_path):
    result = check(token_head, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "requires Ray's token auth and this shell has no token" in result.stderr
    assert "~/.ray/auth_token" in result.stderr


def test_a_wrong_token_is_named(token_head, tmp_path):
    result = check(token_head, tmp_path, RAY_AUTH_TOKEN="b" * 32, RAY_AUTH_MODE="token")
    assert result.returncode == 2 and "rejects this shell's Ray token" in result.stderr


def test_the_token_file_is_read_as_ray_reads_it_and_the_mode_is_asked_for(token_head, tmp_path):
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text(TOKEN + "\n")
    without_mode = check(token_head, tmp_path)
    assert without_mode.returncode == 2 and "export RAY_AUTH_MODE=token" in without_mode.stderr
    assert check(token_head, tmp_path, RAY_AUTH_MODE="token").returncode == 0
    elsewhere = tmp_path / "token"
    elsewhere.write_text(TOKEN)
    assert check(token_head, tmp_path / "nowhere", RAY_AUTH_TOKEN_PATH=str(elsewhere),
                 RAY_AUTH_MODE="token").returncode == 0


@pytest.mark.parametrize("address, form", [("10.0.0.5:6379", "GCS"), ("ray://10.0.0.5:10001", "Ray Client")])
def test_the_gcs_or_client_address_is_named_with_the_job_server_s(address, form, tmp_path):
    """Nothing is sent: the form alone tells (Ray would try the other forms for about 40 s, then a traceback)."""
    result = check(address, tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"RAY_ADDRESS={address} is not the job server" in result.stderr
    assert "RAY_ADDRESS=http://10.0.0.5:8265" in result.stderr and f"the {form} address" in result.stderr
