"""Server-sent events, parsed from raw bytes.

Only what OpenAI-style streams use: ``data:`` fields (several in one event
are joined by newlines), comments (``:``), events ended by a blank line, and
``\\n``, ``\\r\\n`` or ``\\r`` line ends. Other fields (``event:``, ``id:``)
are read past. Chunk boundaries may fall anywhere, even inside a line end.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator


async def iter_sse_data(chunks: AsyncIterable[bytes]) -> AsyncIterator[str]:
    """Yield the data of each event, as soon as the blank line that ends it arrives."""
    parser = SSEParser()
    async for chunk in chunks:
        for data in parser.feed(chunk):
            yield data
    for data in parser.feed(b"\n\n"):  # an unterminated last event still counts
        yield data


class SSEParser:
    """Incremental parser: ``feed`` bytes, get the data of the events they complete."""

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[str] = []

    def feed(self, chunk: bytes) -> list[str]:
        self._buffer += chunk
        events: list[str] = []
        while True:
            end, skip = _line_end(self._buffer)
            if end < 0:
                return events
            line = self._buffer[:end].decode("utf-8", errors="replace")
            self._buffer = self._buffer[end + skip :]
            if not line:
                if self._data:
                    events.append("\n".join(self._data))
                    self._data = []
            elif line.startswith("data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(" ") else value)


def _line_end(buffer: bytes) -> tuple[int, int]:
    """Index and width of the first complete line end, or (-1, 0).

    A trailing ``\\r`` is not yet complete: a ``\\n`` may follow in the next chunk.
    """
    lf = buffer.find(b"\n")
    cr = buffer.find(b"\r")
    if cr < 0 or (0 <= lf < cr):
        return (lf, 1) if lf >= 0 else (-1, 0)
    if cr + 1 == len(buffer):
        return -1, 0
    return (cr, 2) if buffer[cr + 1 : cr + 2] == b"\n" else (cr, 1)
