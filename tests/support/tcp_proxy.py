"""A tiny TCP proxy for fault tests: components talk to PostgreSQL or Redis through
it, and a test cuts it (every open connection is closed, new ones are refused)
and restores it on the same port - an outage without touching the real service.

    proxy = TcpProxy("127.0.0.1", 5432).start()   # proxy.port
    proxy.cut(); time.sleep(10); proxy.restore()
    proxy.stop()
"""
from __future__ import annotations

import asyncio
import threading
from typing import Optional, Set

from appcare.ports import free_port


class TcpProxy:
    def __init__(self, target_host: str, target_port: int, listen_host: str = "127.0.0.1", port: int = 0) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = port or free_port(listen_host)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"tcp-proxy-{self.port}", daemon=True)
        self.server: Optional[asyncio.AbstractServer] = None
        self.writers: Set[asyncio.StreamWriter] = set()
        self.connections = 0  # accepted since start (for tests)

    # ----------------------------------------------------------------- control
    def _call(self, coro) -> object:  # noqa: ANN001
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def start(self) -> "TcpProxy":
        self.thread.start()
        self._call(self._listen())
        return self

    def cut(self) -> None:
        """Closes the listening socket and every proxied connection."""
        self._call(self._cut())

    def restore(self) -> None:
        self._call(self._listen())

    def stop(self) -> None:
        if self.thread.is_alive():
            self._call(self._cut())
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)

    @property
    def is_cut(self) -> bool:
        return self.server is None

    # -------------------------------------------------------------- internals
    async def _listen(self) -> None:
        if self.server is None:
            self.server = await asyncio.start_server(self._handle, self.listen_host, self.port, reuse_address=True)

    async def _cut(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            try:
                writer.transport.abort()
            except Exception:  # noqa: BLE001
                pass
        self.writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while True:
                    data = await src.read(65536)
                    if not data:
                        break
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass
            finally:
                try:
                    dst.close()
                except Exception:  # noqa: BLE001
                    pass

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.discard(writer)
        self.writers.discard(up_writer)
