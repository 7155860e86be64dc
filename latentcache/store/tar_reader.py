"""A fast, strict reader of tar streams: one struct-free pass over 512-byte ustar headers.

::

    binary stream (LatentStore.open_file: a local file or, through fsspec, a URL)
      └► 512-byte headers: checksum verified; pax 'x' and GNU 'L' / 'K' long names honoured
      └► TarEntry(name, kind, linkname, size) ─► ``check(entry)`` (the caller's rules) runs
         BEFORE the member's data is read, so a size or type it refuses is never read
      └► (entry, data) of each member the check lets through

No ``tarfile`` objects: a sample of six members costs about 20x less than ``tarfile``'s
streaming mode. Errors are ValueError with one line; callers add the tar's name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

__all__ = ["TarEntry", "tar_members", "REGULAR", "LINKS"]

_BLOCK = 512
REGULAR = (b"0", b"\0", b"7")  # regular file ('7': contiguous file, a regular file too)
LINKS = (b"1", b"2")  # hard link, symbolic link
_META = (b"x", b"g", b"L", b"K")  # pax per-file / global headers, GNU long name / link name
MAX_META_BYTES = 1 << 16  # pax and long-name records


@dataclass(frozen=True)
class TarEntry:
    name: str
    kind: bytes  # the ustar typeflag
    linkname: str
    size: int

    @property
    def regular(self) -> bool:
        return self.kind in REGULAR

    @property
    def link(self) -> bool:
        return self.kind in LINKS


def _number(field: bytes) -> int:
    if field[:1] in (b"\x80", b"\xff"):  # GNU base-256 (0xff: negative)
        if field[:1] == b"\xff":
            raise ValueError("a negative number in a tar header")
        return int.from_bytes(field[1:], "big")
    text = field.rstrip(b"\0 ").lstrip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise ValueError(f"bad number {field!r} in a tar header") from None


def _checksum_ok(header: bytes) -> bool:
    return _number(header[148:156]) == sum(header[:148]) + 8 * 32 + sum(header[156:])


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", errors="replace")


def _pax_records(data: bytes) -> dict[str, str]:
    records, pos = {}, 0
    while pos < len(data):
        space = data.find(b" ", pos)
        try:
            n = int(data[pos:space]) if space > pos else 0
        except ValueError:
            n = 0
        if n <= 0 or pos + n > len(data):
            raise ValueError("a malformed pax header")
        key, _, value = data[space + 1 : pos + n - 1].partition(b"=")
        records[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        pos += n
    return records


def _read_exact(f, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated tar ({len(data)} of {n} bytes of a member)")
    return data


def tar_members(f, check: Callable[[TarEntry], None]) -> Iterator[tuple[TarEntry, bytes]]:
    """(entry, data) of each member of the tar stream ``f``; ``check(entry)`` first, which
    raises ValueError to refuse it. A link or other non-regular member is yielded with empty
    data only if ``check`` lets it through."""
    name = link = None
    while True:
        header = f.read(_BLOCK)
        if len(header) < _BLOCK or header == bytes(_BLOCK):
            if 0 < len(header) < _BLOCK:
                raise ValueError(f"truncated tar (a header of {len(header)} bytes)")
            return  # end of archive (zero block, or the end of the stream)
        if not _checksum_ok(header):
            raise ValueError("bad tar header checksum")
        size, kind = _number(header[124:136]), header[156:157]
        if kind in _META:
            if size > MAX_META_BYTES:
                raise ValueError(f"a tar extended header of {size} bytes")
            data = _read_exact(f, size)
            f.read(-size % _BLOCK)
            if kind == b"x":
                pax = _pax_records(data)
                name, link = pax.get("path", name), pax.get("linkpath", link)
            elif kind == b"L":
                name = _text(data)
            elif kind == b"K":
                link = _text(data)
            continue
        entry = TarEntry(name or _header_name(header), kind, link or _text(header[157:257]), size)
        name = link = None
        check(entry)
        if entry.regular:
            data = _read_exact(f, size)
            f.read(-size % _BLOCK)
        else:
            data = b""
            _read_exact(f, size + (-size % _BLOCK))  # e.g. a sparse map; skipped, not kept
        yield entry, data


def _header_name(header: bytes) -> str:
    name = _text(header[:100])
    if header[257:262] == b"ustar":
        prefix = _text(header[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    return name
