"""The tests' password and one real argon2id hash of it, made once per session.

argon2id's defaults cost ~0.34 s of CPU per hash (measured), and tests create hundreds of users; the
app still verifies this real hash at every login, so nothing about logging in is skipped.
"""

from __future__ import annotations

import functools

from telesales.passwords import hash_password

PASSWORD = "correct horse"


@functools.cache
def password_hash(password: str = PASSWORD) -> str:
    return hash_password(password)
