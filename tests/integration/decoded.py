"""Every form a value may take in what Prefect stores: the bytes as they are, and what base64 runs, compressed
blobs and pickles inside them hold (recursively). A plain-text scan misses a value that Prefect's result storage
keeps as a base64 pickle; a scan of `decoded_forms` does not. Nothing is unpickled: the pickle's opcodes are
read (`pickletools`), so scanning runs no stored code."""

from __future__ import annotations

import base64
import binascii
import bz2
import gzip
import json
import lzma
import pickletools
import re
import zlib
from collections.abc import Callable, Iterator

_BASE64_RUN = re.compile(rb"[A-Za-z0-9+/_-]{16,}={0,2}")
_MAX_DEPTH = 4
_DECOMPRESSORS: tuple[Callable[[bytes], bytes], ...] = (zlib.decompress, gzip.decompress, bz2.decompress,
                                                        lzma.decompress)  # fmt: skip


def decoded_forms(data: bytes, depth: int = 0) -> Iterator[bytes]:
    """`data`, then every decoding found inside it."""
    yield data
    if depth >= _MAX_DEPTH:
        return
    for inner in _inner(data):
        yield from decoded_forms(inner, depth + 1)


def _inner(data: bytes) -> Iterator[bytes]:
    yield from _json_strings(data)
    yield from _decompressed(data)
    yield from _pickled_strings(data)
    # Base64 as Python writes it (`encodebytes`) is broken into lines: the runs are read with the breaks taken out.
    for run in _BASE64_RUN.findall(b"".join(data.split())):
        raw = _b64(run)
        if raw is not None:
            yield raw


def _json_strings(data: bytes) -> list[bytes]:
    """The string values of a JSON document, unescaped (empty when `data` is no JSON)."""
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return []
    found: list[bytes] = []
    pending = [document]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            found.append(item.encode("utf-8", "surrogatepass"))
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return found


def _b64(run: bytes) -> bytes | None:
    padded = run.rstrip(b"=") + b"=" * (-len(run.rstrip(b"=")) % 4)
    for decode in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decode(padded)
        except (binascii.Error, ValueError):
            continue
    return None


def _decompressed(data: bytes) -> list[bytes]:
    found = []
    for decompress in _DECOMPRESSORS:
        try:
            found.append(decompress(data))
        except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):  # not this format
            continue
    return found


def _pickled_strings(data: bytes) -> list[bytes]:
    """The string and bytes arguments of a pickle's opcodes (empty when `data` is no pickle)."""
    if not data.startswith(b"\x80"):
        return []
    found = []
    try:
        for _opcode, argument, _position in pickletools.genops(data):
            if isinstance(argument, str):
                found.append(argument.encode("utf-8", "surrogatepass"))
            elif isinstance(argument, bytes | bytearray):
                found.append(bytes(argument))
    except (ValueError, EOFError, IndexError, UnicodeDecodeError):  # truncated or foreign: keep what was read
        return found
    return found
