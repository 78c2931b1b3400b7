#!/usr/bin/env python3
"""Prints a user bearer token for the local dev app (scripts/dev).

    scripts/token.py alice            # valid for 24 hours
    TOKEN=$(scripts/token.py alice)
    curl -H "authorization: Bearer $TOKEN" http://127.0.0.1:3000/api/profile

The secret is SPIN_VARIABLE_JWT_SECRET from the environment, else from
.data/dev/secrets.env (written by scripts/dev).
"""
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "bench.d"))
from tokens import token  # noqa: E402


def secret() -> str:
    if os.environ.get("SPIN_VARIABLE_JWT_SECRET"):
        return os.environ["SPIN_VARIABLE_JWT_SECRET"]
    secrets = Path(__file__).resolve().parent.parent / ".data/dev/secrets.env"
    for line in secrets.read_text().splitlines():
        if line.startswith("SPIN_VARIABLE_JWT_SECRET="):
            return line.split("=", 1)[1]
    sys.exit(f"no SPIN_VARIABLE_JWT_SECRET in the environment or {secrets}: run scripts/dev first")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: scripts/token.py USER_ID")
    import time

    print(token(secret().encode(), sys.argv[1], int(time.time()) + 24 * 3600))
