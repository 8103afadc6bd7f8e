import asyncio

import pytest

from loadtests.sse import SSEParser, iter_sse_data

STREAM = (
    b": keep-alive comment\n\n"
    b'data: {"a": 1}\n\n'
    b"event: message\r\n"
    b"data:first\r\n"
    b"data: second\r\n\r\n"
    b"data: [DONE]\r\r\n"
)
EXPECTED = ['{"a": 1}', "first\nsecond", "[DONE]"]


@pytest.mark.parametrize("size", [1, 2, 3, 7, len(STREAM)])
def test_events_survive_any_chunk_boundary(size):
    parser = SSEParser()
    events = []
    for i in range(0, len(STREAM), size):
        events += parser.feed(STREAM[i : i + size])
    assert events == EXPECTED


def test_crlf_split_between_chunks_is_one_line_end():
    parser = SSEParser()
    assert parser.feed(b"data: x\r") == []
    assert parser.feed(b"\n\r\n") == ["x"]


def test_unterminated_last_event_is_flushed():
    async def chunks():
        yield b"data: a\n\ndata: tail"

    async def collect():
        return [d async for d in iter_sse_data(chunks())]

    assert asyncio.run(collect()) == ["a", "tail"]
