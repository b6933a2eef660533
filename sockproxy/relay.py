"""Forward/stream/hijack stage: the only code that moves body bytes.

Bodies are copied in bounded pieces with backpressure (``drain``), never
read whole. Chunked bodies are forwarded as they were framed, chunk-size
lines included, each line validated before it is passed on so that the
receiver cannot see a different message boundary than we did.
"""

from __future__ import annotations

import asyncio
import contextlib

from sockproxy.errors import FramingError
from sockproxy.framing import CRLF, check_trailer_line, parse_chunk_size

PIECE = 256 * 1024  # the most bytes moved per read


class SourceGone(Exception):
    """The side we were reading from closed before its message ended."""


class Meter:
    """Counts the bytes one side received."""

    __slots__ = ("count",)

    def __init__(self) -> None:
        self.count = 0


async def _read_line(reader: asyncio.StreamReader) -> bytes:
    try:
        return await reader.readuntil(CRLF)
    except asyncio.IncompleteReadError as exc:
        raise SourceGone from exc
    except asyncio.LimitOverrunError as exc:
        raise FramingError("chunk framing line too long") from exc


async def copy_length(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int, meter: Meter
) -> None:
    """Copy exactly ``length`` bytes."""
    remaining = length
    while remaining:
        data = await reader.read(min(remaining, PIECE))
        if not data:
            raise SourceGone
        remaining -= len(data)
        meter.count += len(data)
        writer.write(data)
        await writer.drain()


async def copy_chunked(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meter: Meter
) -> None:
    """Copy one chunked body, through its last chunk and trailers."""
    while True:
        line = await _read_line(reader)
        size = parse_chunk_size(line)
        meter.count += len(line)
        writer.write(line)
        if size == 0:
            break
        await copy_length(reader, writer, size, meter)
        end = await _read_line(reader)
        if end != CRLF:
            raise FramingError("chunk data not followed by CRLF")
        writer.write(end)
    while True:
        line = await _read_line(reader)
        check_trailer_line(line)
        writer.write(line)
        if line == CRLF:
            break
    await writer.drain()


async def copy_until_eof(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, meter: Meter
) -> None:
    """Copy until the source ends its side, then end ours (half-close)."""
    while data := await reader.read(PIECE):
        meter.count += len(data)
        writer.write(data)
        await writer.drain()
    if writer.can_write_eof() and not writer.is_closing():
        writer.write_eof()


async def splice(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    engine_reader: asyncio.StreamReader,
    engine_writer: asyncio.StreamWriter,
    sent: Meter,
    received: Meter,
) -> None:
    """Pipe a hijacked connection both ways until both directions ended.

    Each side's end of input becomes a half-close on the other side, so a
    client's stdin EOF reaches the engine and the engine's close ends the
    client's read. If a side fails, both connections are closed.
    """
    upstream = asyncio.ensure_future(copy_until_eof(client_reader, engine_writer, sent))
    downstream = asyncio.ensure_future(copy_until_eof(engine_reader, client_writer, received))
    try:
        pending: set[asyncio.Future[None]] = {upstream, downstream}
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is not None:
                    return  # finally: cancel the other direction
            if downstream in done and upstream in pending and engine_writer.is_closing():
                return
    finally:
        for task in (upstream, downstream):
            task.cancel()
        for task in (upstream, downstream):
            with contextlib.suppress(BaseException):
                await task
