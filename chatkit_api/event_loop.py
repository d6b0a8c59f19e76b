"""Running the async ChatKit server from a WSGI request, with the ORM on the request's thread.

The ChatKit server and the Agents SDK are async; this service is WSGI (runserver, any WSGI
server, apig-wsgi on Lambda). A request gets an event loop running in a thread of its own,
and every synchronous call the async code makes through `RequestEventLoop.call` (the
database, mail) is handed back to the request's own thread. That keeps Django's per-thread connection handling
intact: the queries use the request's connection, which Django opens and closes around the
request (and which a test's transaction covers), never a connection left open in a pool thread.

A response can then be streamed: the request thread yields each chunk to the WSGI server as
the loop produces it, and serves the loop's synchronous calls in between.
"""

import asyncio
import concurrent.futures
import functools
import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Coroutine, Generator
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class _Call:
    future: concurrent.futures.Future[Any]
    function: Callable[[], Any]

    def run(self) -> None:
        if not self.future.set_running_or_notify_cancel():
            return
        try:
            result = self.function()
        except BaseException as exc:
            self.future.set_exception(exc)
        else:
            self.future.set_result(result)


@dataclass(frozen=True)
class _Value:
    value: Any


@dataclass(frozen=True)
class _Finished:
    error: BaseException | None


class RequestEventLoop:
    """An event loop in its own thread for one request; sync calls run on the request thread."""

    def __init__(self) -> None:
        self._inbox: SimpleQueue[_Call | _Value | _Finished] = SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chatkit-event-loop", daemon=True)
        self._thread.start()

    async def call(self, function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """From the loop: run `function` on the request thread and wait for its result."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._inbox.put(_Call(future, functools.partial(function, *args, **kwargs)))
        return await asyncio.wrap_future(future)

    def iterate(self, source: AsyncIterable[T]) -> Generator[T, None, None]:
        """From the request thread: the values of `source`, produced on the loop.

        Closing the iterator early (the client went away) cancels the producer the way an
        async server would, so it can clean up, and waits until it has.
        """

        async def produce() -> None:
            async for value in source:
                self._inbox.put(_Value(value))

        return self._serve(produce())

    def run(self, awaitable: Awaitable[T]) -> T:
        """From the request thread: run `awaitable` on the loop and return its result."""

        async def produce() -> None:
            self._inbox.put(_Value(await awaitable))

        [result] = list(self._serve(produce()))
        return result

    def close(self) -> None:
        """Cancel whatever still runs on the loop, let it clean up, and stop the loop's thread."""

        async def shut_down() -> None:
            current = asyncio.current_task()
            pending = [task for task in asyncio.all_tasks() if task is not current]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self._loop.shutdown_asyncgens()
            await self._loop.shutdown_default_executor()

        try:
            self.run(shut_down())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def _serve(self, producer: Coroutine[Any, Any, None]) -> Generator[Any, None, None]:
        """Run `producer` on the loop; yield what it puts in the inbox, serving calls meanwhile."""
        inbox = self._inbox

        async def run_producer() -> None:
            try:
                await producer
            # Everything, cancellation included, is handed to the request thread, which raises it.
            except BaseException as exc:
                inbox.put(_Finished(exc))
            else:
                inbox.put(_Finished(None))

        future = asyncio.run_coroutine_threadsafe(run_producer(), self._loop)
        finished = False
        try:
            while True:
                message = inbox.get()
                if isinstance(message, _Call):
                    message.run()
                elif isinstance(message, _Value):
                    yield message.value
                else:
                    finished = True
                    if message.error is not None:
                        raise message.error
                    return
        finally:
            if not finished:
                future.cancel()
                self._serve_until_finished()

    def _serve_until_finished(self) -> None:
        while True:
            message = self._inbox.get()
            if isinstance(message, _Call):
                message.run()
            elif isinstance(message, _Finished):
                return
