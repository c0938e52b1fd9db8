"""Sends SIA DC-09 messages to a receiver with dc09-spt (an independent implementation,
PyPI `dc09-spt`, van Ovost Automatisering) and prints, as one JSON line, whether each was
acknowledged. Used by tests/tests/e2e_dc09.rs.

usage: dc09_send.py HOST PORT tcp|udp ACCOUNT [KEY_HEX]
"""
import json
import sys

from dc09_spt import dc09_spt
from dc09_spt.comm.transpath import TransPath
from dc09_spt.msg.dc03_msg import dc03_msg
from dc09_spt.msg.dc05_msg import dc05_msg

# dc09-spt 0.0.4 was written for pycrypto, which took text as bytes; pycryptodome (the
# maintained replacement) wants bytes. This shim hands dc09-spt's text IV and plaintext
# over as Latin-1 bytes, exactly what pycrypto did; the protocol code is dc09-spt's own.
import importlib

from Crypto.Cipher import AES as _AES

# The module itself (its package exports a class of the same name).
_dc09_msg = importlib.import_module("dc09_spt.msg.dc09_msg")


def _as_bytes(v):
    return v.encode("latin-1") if isinstance(v, str) else v


class _Cipher:
    def __init__(self, cipher):
        self._cipher = cipher

    def encrypt(self, data):
        return self._cipher.encrypt(_as_bytes(data))

    def decrypt(self, data):
        return self._cipher.decrypt(_as_bytes(data))


class _AesShim:
    MODE_CBC = _AES.MODE_CBC

    @staticmethod
    def new(key, mode, iv):
        return _Cipher(_AES.new(_as_bytes(key), mode, _as_bytes(iv)))


_dc09_msg.AES = _AesShim

host, port, proto, account = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
key = bytes.fromhex(sys.argv[5]) if len(sys.argv) > 5 else None

spt = dc09_spt.dc09_spt(account)
path = TransPath(host, port, account, key=key, type=proto, timeout=5.0)
events = [
    ("SIA-DCS", dc03_msg.dc03event(account, {"code": "FA", "zone": 1})),  # fire alarm
    ("ADM-CID", dc05_msg.dc05event(account, {"code": 101, "q": 1, "zone": 1})),  # pendant
    ("ADM-CID", dc05_msg.dc05event(account, {"code": 602, "q": 1})),  # periodic test
]
results = []
for n, (kind, body) in enumerate(events, start=1):
    try:
        ok = spt.transfer_msg(n, kind, body, path)
    except Exception as e:  # a reply dc09-spt cannot read counts as not acknowledged
        ok = False
        print(f"message {n}: {e}", file=sys.stderr)
    results.append({"n": n, "type": kind, "acked": bool(ok)})
print(json.dumps(results))
