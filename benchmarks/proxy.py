"""A slow link for the benchmark: a TCP proxy on loopback that forwards to production at a fixed rate.

Production in another region reaches staging through a link far slower than loopback; the proxy makes
that link here, so that a contender's bytes read from production cost what they would cost there. Both
directions share one token bucket of `rate` bytes per second.
"""

from __future__ import annotations

import asyncio
import threading
import time

from sync_assets.demo.localpg import free_port

CHUNK = 64 * 1024


class _Bucket:
    def __init__(self, rate: float) -> None:
        self.rate, self.allowance, self.at = rate, 0.0, time.monotonic()

    async def take(self, n: int) -> None:
        """Count n more bytes; wait while the link is behind its rate."""
        now = time.monotonic()
        # At most a tenth of a second of credit: a burst after idling stays short.
        self.allowance = min(self.rate / 10, self.allowance + (now - self.at) * self.rate) - n
        self.at = now
        if self.allowance < 0:
            await asyncio.sleep(-self.allowance / self.rate)


class SlowLink:
    """Listens on 127.0.0.1:<port> and forwards to 127.0.0.1:<target> at `rate` bytes per second."""

    def __init__(self, target: int, rate: float) -> None:
        self.target, self.rate, self.port = target, rate, free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, bucket: _Bucket) -> None:
        try:
            while data := await reader.read(CHUNK):
                await bucket.take(len(data))
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, bucket: _Bucket) -> asyncio.Server:
        async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target)
            await asyncio.gather(
                self._pipe(client_reader, server_writer, bucket), self._pipe(server_reader, client_writer, bucket)
            )

        return await asyncio.start_server(handle, "127.0.0.1", self.port)

    def __enter__(self) -> SlowLink:
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(self._serve(_Bucket(self.rate)), self.loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
