"""`telesales users add`: password from stdin, or generated and printed once."""

import os
import re
import subprocess
import sys

from telesales.passwords import verify_password


def _users_add(db_url, *args, stdin=""):
    env = {**os.environ, "TELESALES_DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "telesales", "users", "add", *args],
                          input=stdin, env=env, capture_output=True, text=True, timeout=60)


async def test_password_from_stdin_is_stored_hashed(db_url, conn):
    result = _users_add(db_url, "li.wei", "--role", "agent", "--team", "North", stdin="s3cret-pass\n")
    assert result.returncode == 0, result.stderr
    assert "password:" not in result.stdout
    row = await conn.fetchrow("select u.*, t.name team from users u join teams t on t.id = u.team_id")
    assert row["username"] == "li.wei" and row["role"] == "agent" and row["team"] == "North"
    assert "s3cret-pass" not in row["password_hash"]
    assert verify_password(row["password_hash"], "s3cret-pass")


async def test_generated_password_is_printed_once_and_works(db_url, conn):
    result = _users_add(db_url, "qa1", "--role", "qa")
    assert result.returncode == 0, result.stderr
    password = re.search(r"password: (\S+)", result.stdout).group(1)
    assert verify_password(await conn.fetchval("select password_hash from users"), password)


async def test_duplicate_user_and_unknown_role_get_clear_errors(db_url, conn):
    _users_add(db_url, "sam", "--role", "agent", stdin="long-enough\n")
    result = _users_add(db_url, "SAM", "--role", "agent", stdin="long-enough\n")
    assert result.returncode == 1 and "already exists" in result.stderr
    result = _users_add(db_url, "kim", "--role", "boss", stdin="long-enough\n")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert await conn.fetchval("select count(*) from users") == 1
