"""Writes one HS256 user bearer token per line, for users bench-user-0..N-1.

Usage: tokens.py SECRET COUNT > tokens.txt
"""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: bytes, sub: str, exp: int) -> str:
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64(json.dumps({"sub": sub, "exp": exp}).encode())
    signature = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def main() -> None:
    secret, count = sys.argv[1].encode(), int(sys.argv[2])
    exp = int(time.time()) + 24 * 3600
    for i in range(count):
        print(token(secret, f"bench-user-{i}", exp))


if __name__ == "__main__":
    main()
