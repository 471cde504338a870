"""The host end of the microVM channel (docs/protocol.md, "The microVM channel").

The agent in the guest serves the same protocol connections as in the namespace backend, but over
one virtio-console stream: each message is ``{u32 channel, u32 length, bytes}``. The monitor turns
that stream back into ordinary connections on ``run/agent.sock``, so ``Sandbox.exec`` is the same
code for both backends. The socket only appears once the agent has said it is ready.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

HEADER = struct.Struct("<II")
MAX_MESSAGE = 65536
READY = b"ready"


def _bound(path: Path) -> socket.socket:
    """A listening Unix socket at ``path``, bound through its folder's descriptor: socket paths are
    limited to 108 bytes, sandbox folders are not."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dirfd = os.open(path.parent, os.O_PATH)
    try:
        sock.bind(f"/proc/self/fd/{dirfd}/{path.name}")
    finally:
        os.close(dirfd)
    sock.listen(128)
    return sock


class ChannelMux:
    """Multiplexes connections accepted on ``listen_path`` over ``stream`` (the console's host end)."""

    def __init__(self, stream: socket.socket, listen_path: Path, on_ready: Callable[[], None] = lambda: None) -> None:
        self._stream = stream
        self._path = listen_path
        self._on_ready = on_ready
        self._clients: dict[int, asyncio.StreamWriter] = {}
        self._next_id = 1
        self._out: asyncio.StreamWriter | None = None

    async def serve(self) -> None:
        """Runs until the guest's end of the stream closes."""
        reader, self._out = await asyncio.open_connection(sock=self._stream, limit=MAX_MESSAGE * 2)
        server = None
        try:
            while True:
                try:
                    channel, length = HEADER.unpack(await reader.readexactly(HEADER.size))
                    data = await reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                if channel == 0:
                    if data == READY and server is None:
                        server = await asyncio.start_unix_server(self._accept, sock=_bound(self._path))
                        self._on_ready()
                    continue
                client = self._clients.get(channel)
                if client is None:
                    continue      # a channel the host already closed
                if not data:
                    del self._clients[channel]
                    client.close()
                    continue
                client.write(data)
                with contextlib.suppress(ConnectionError):
                    await client.drain()
        finally:
            for client in self._clients.values():
                client.close()
            if server is not None:
                server.close()

    def _send(self, channel: int, data: bytes) -> None:
        assert self._out is not None
        self._out.write(HEADER.pack(channel, len(data)) + data)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        channel, self._next_id = self._next_id, self._next_id + 1
        self._clients[channel] = writer
        try:
            while data := await reader.read(MAX_MESSAGE):
                self._send(channel, data)
                assert self._out is not None
                await self._out.drain()
        except ConnectionError:
            pass
        finally:
            if self._clients.pop(channel, None) is not None:
                self._send(channel, b"")   # ends the session, and the command with it
                writer.close()
