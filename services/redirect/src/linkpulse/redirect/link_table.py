"""One generation of cached links, packed: their encoded records end to end in one buffer, found by hashing.

Why not a dict: a dict of a million `code -> bytes` costs two Python objects and a dict entry per link,
about 205 bytes as allocated and 280 in a worker under load (object headers, allocator rounding and
pools that the interleaved request garbage leaves part-used). Here a link costs its encoded record
(about 58 bytes for a 35-character URL) in one bytearray, plus 16 bytes of index in two arrays kept at
most half full: about 100 bytes, in a handful of large blocks the allocator returns whole when the
generation is dropped.

The index is open addressing with linear probing over `array('q')` pairs (the code's hash, and where
its record lies), split into 256 parts by the hash's low byte so that growing one part rehashes a few
thousand slots (a couple of milliseconds of the event loop), never the whole generation at once. A slot
only records the hash: a hit is confirmed by decoding the record and comparing its code, so two codes
with one hash cost a longer probe, never a wrong answer.
"""

from __future__ import annotations

from array import array

from linkpulse.links import LinkRecord, decode_record, encode_record

__all__ = ["LinkTable"]

_PART_BITS = 8
_PARTS = 1 << _PART_BITS
_FIRST_SLOTS = 8
_EMPTY = 0
"""A slot's hash when nothing was ever put there (a code whose hash is 0 is stored under 1)."""
_GONE = -1
"""A slot's location once its link was removed: probing goes on past it; a grow drops it."""
_LENGTH_BITS = 16
_LENGTH_MASK = (1 << _LENGTH_BITS) - 1
MAX_RECORD_BYTES = _LENGTH_MASK
"""Longest encoded record a table holds (URLs are at most 2048 bytes, so every record fits)."""


class LinkTable:
    """Links of one cache generation, by code; no deletion of memory until the whole table is dropped."""

    __slots__ = ("_arena", "_filled", "_hashes", "_locs", "_sweep", "live")

    def __init__(self) -> None:
        self._arena = bytearray()
        self._hashes = [array("q", bytes(8 * _FIRST_SLOTS)) for _ in range(_PARTS)]
        self._locs = [array("q", bytes(8 * _FIRST_SLOTS)) for _ in range(_PARTS)]
        self._filled = [0] * _PARTS
        """Slots of each part ever used since its last grow: live ones and removed ones."""
        self._sweep = (0, 0)
        """Where `pop_any` goes on looking: (part, slot)."""
        self.live = 0

    def __len__(self) -> int:
        return self.live

    @property
    def nbytes(self) -> int:
        """Bytes of the arena and the index (the table's memory, bar a few hundred small objects)."""
        index = sum(len(hashes) for hashes in self._hashes) * 16
        return len(self._arena) + index

    def get(self, code: str) -> LinkRecord | None:
        """The record of `code`, or None."""
        found = self._find(code)
        return found[2] if found is not None else None

    def put(self, code: str, record: LinkRecord) -> bool:
        """Store `record` under `code` (replacing any); False when it is too long to keep here."""
        data = encode_record(record)
        if len(data) > MAX_RECORD_BYTES:
            self.remove(code)
            return False
        loc = (len(self._arena) << _LENGTH_BITS) | len(data)
        self._arena += data
        found = self._find(code)
        if found is not None:
            # The replaced record's bytes stay in the arena until the generation is dropped: replacements
            # follow change events, which are rare beside the reads that fill the cache.
            part, i, _ = found
            self._locs[part][i] = loc
            return True
        h = hash(code) or 1
        part = h & (_PARTS - 1)
        if 2 * (self._filled[part] + 1) > len(self._hashes[part]):
            self._grow(part)
        _place(self._hashes[part], self._locs[part], h, loc)
        self._filled[part] += 1
        self.live += 1
        return True

    def remove(self, code: str) -> bool:
        """Forget `code`; False when it was not here."""
        found = self._find(code)
        if found is None:
            return False
        part, i, _ = found
        self._locs[part][i] = _GONE
        self.live -= 1
        return True

    def pop_any(self) -> str | None:
        """Remove some link and return its code (None when empty): the cache's room-making when it is full.

        A cursor sweeps the slots once, so removing every link one by one costs one pass over the table.
        """
        if self.live == 0:
            return None
        part, start = self._sweep
        # One lap at most (plus the part it started in, from its first slot): a table that is not swept
        # may have taken links behind the cursor.
        for _ in range(_PARTS + 1):
            hashes, locs = self._hashes[part], self._locs[part]
            for i in range(start, len(locs)):
                loc = locs[i]
                if loc != _GONE and hashes[i] != _EMPTY:
                    locs[i] = _GONE
                    self.live -= 1
                    self._sweep = (part, i + 1)
                    return self._record_at(loc).code
            part, start = (part + 1) % _PARTS, 0
        return None

    def _record_at(self, loc: int) -> LinkRecord:
        start = loc >> _LENGTH_BITS
        return decode_record(self._arena[start : start + (loc & _LENGTH_MASK)])

    def _find(self, code: str) -> tuple[int, int, LinkRecord] | None:
        """(part, slot, record) of `code`'s live slot, or None."""
        h = hash(code) or 1
        part = h & (_PARTS - 1)
        hashes = self._hashes[part]
        mask = len(hashes) - 1
        i = (h >> _PART_BITS) & mask
        while True:
            found = hashes[i]
            if found == h:
                loc = self._locs[part][i]
                if loc != _GONE:
                    record = self._record_at(loc)
                    if record.code == code:
                        return part, i, record
            elif found == _EMPTY:
                return None
            i = (i + 1) & mask

    def _grow(self, part: int) -> None:
        # Rebuilt from the live slots only (removed ones are dropped), at most a third full, so it is
        # rebuilt again only after it has taken half as many links again as it holds.
        old_hashes, old_locs = self._hashes[part], self._locs[part]
        live = [(h, loc) for h, loc in zip(old_hashes, old_locs, strict=True) if h != _EMPTY and loc != _GONE]
        size = _FIRST_SLOTS
        while size < 3 * (len(live) + 1):
            size *= 2
        hashes, locs = array("q", bytes(8 * size)), array("q", bytes(8 * size))
        for h, loc in live:
            _place(hashes, locs, h, loc)
        self._hashes[part], self._locs[part] = hashes, locs
        self._filled[part] = len(live)
        # The sweep cursor may point into this part: slots moved, so start the part over.
        if self._sweep[0] == part:
            self._sweep = (part, 0)


def _place(hashes: array[int], locs: array[int], h: int, loc: int) -> None:
    """Put (h, loc) in the first empty slot of h's probe sequence (the part has room: it is at most half full)."""
    mask = len(hashes) - 1
    i = (h >> _PART_BITS) & mask
    while hashes[i] != _EMPTY:
        i = (i + 1) & mask
    hashes[i] = h
    locs[i] = loc
