"""The allocation listing's pages, decoded in a second process once the listing is long.

Decoding a page of Nomad's JSON and computing what its columns are made of
(:func:`~ai4os_kit.accounting.nomad_page.page_parts`) is most of a
collector run's own work; storing the rows and looking up owners and nodes
is the rest. On a listing longer than ``INLINE_PAGES`` pages (and a machine
with more than one CPU), a spawned process decodes the pages ahead while
this one stores the pages before them, and decodes one page in ``EVERY``
itself, so that the two finish their shares at about the same time. Ten
million allocations on two cores: collect 150-172 s -> 92-100 s
(docs/accounting.md). A short listing is decoded here: starting the process
would cost more than it saves. The job listing, read before the allocations
on every run, is split the same way (:meth:`PageDecoder.job_pages`): the
process returns each job page's keys and owners
(:class:`~ai4os_kit.accounting.nomad_listing.JobParts`) and this one hashes
the keys into its owner index.

The second process gets a page's bytes and returns its
:class:`~ai4os_kit.accounting.nomad_page.PageParts`, or None for a page it
does not compute (a value of an unexpected type, a number beyond int64, a
task time not in Nomad's form): that page is decoded here, where its problem
is named, as are the stubs of a page whose parts hold an allocation that
must go stub by stub. Nothing but page bytes (and what kind of page they
are), their parts and its own CPU time and memory cross between the
processes: the pages in memory shared with it (a few slots, each page copied
into one once), the rest through two pipes, raised to 1 MiB so that neither
side waits while the other writes a page. The second process opens nothing
but that shared memory, which this one makes and removes (Python's resource
tracker removes it when this process is killed). It is spawned, not forked
(this process's threads and SQLite connections are not carried into it),
ignores Ctrl-C (the collector handles it and closes the pipe) and ends when
the pipe closes, also when the collector is killed.

Measured on the shared 2-core test machine, and the reason for the choices
here: with a ``ProcessPoolExecutor`` the run was slower than in one process
(1M allocations: collect 13.8 s -> 16.6 s): its worker spent twice the
decoding's own CPU per page, as its queue copies each page into fresh
buffers, and every fresh 1 MiB buffer is page faults (272,000 for 400
pages; a shorter switch interval for the executor's threads changed
nothing). Here the worker reads each page into one reused buffer and glibc
is told to keep page-sized blocks in its heap (7,000 faults).
"""

from __future__ import annotations

import ctypes
import fcntl
import gc
import itertools
import multiprocessing
import pickle
import os
import signal
import struct
import sys
from collections import deque
from dataclasses import dataclass
from multiprocessing import shared_memory
from multiprocessing.connection import Connection
from typing import Any, Callable, Iterable, Iterator

import msgspec

from ai4os_kit.accounting.nomad_listing import _ALLOC_PAGE, JobParts, job_page_parts
from ai4os_kit.accounting.nomad_page import PageParts, page_parts
from ai4os_kit.accounting.procstat import cpu_seconds, peak_mb
from ai4os_kit.errors import KitError

INLINE_PAGES = 8  # pages decoded here before the second process starts (4,000 allocations of 500-stub pages)
DEPTH = 2  # pages handed to the second process ahead of the one this process waits for (see _Worker)
EVERY = 3  # past the first pages, every EVERY-th page is decoded here too (see PageDecoder)
PIPE_BYTES = 1 << 20  # Linux lets anyone raise a pipe's buffer to 1 MiB: a page of 500 stubs without events fits
SLOTS = DEPTH + 1  # pages the second process may hold at once (see PageDecoder._pipeline), each in its own slot
SLOT_BYTES = 4 << 20  # a page up to this size is handed over in shared memory, a larger one through the pipe
_SLOT = struct.Struct("<2sQQ")  # NUL S, where the page starts and its size: what the pipe carries of a page in a slot
_F_SETPIPE_SZ = 1031
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def parts_of_page(body: bytes | memoryview) -> PageParts | None:
    """The parts of one page, or None where the collector must decode the page itself."""
    try:
        stubs = _ALLOC_PAGE.decode(body)
    except msgspec.MsgspecError:
        return None
    return page_parts(stubs)


def _serve(pages: Connection, results: Connection, shared_name: str | None = None) -> None:
    """The second process: page bytes in, pickled parts out, until the pipe closes.

    An empty message asks for its usage; a message that starts with a NUL
    (which no page sent here does) says where the next page is or what the
    next pages are: ``NUL S <start> <size>`` (:data:`_SLOT`) a page at
    ``start`` in the shared memory ``shared_name``, ``NUL A`` allocation pages
    (the start), ``NUL J <owner key>`` job pages.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the collector's to handle: it closes the pipe
    gc.disable()  # what it makes is acyclic: reference counts free it
    try:  # glibc: keep the page-sized buffers of each page in the heap, not in mappings made and unmade per page
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 16 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 64 << 20)
    except (OSError, AttributeError):
        pass
    shared = shared_memory.SharedMemory(shared_name) if shared_name else None
    try:
        _answer(pages, results, shared.buf if shared is not None else None)
    finally:
        if shared is not None:
            shared.close()


def _answer(pages: Connection, results: Connection, slots: memoryview | None) -> None:
    """:func:`_serve`'s loop (``slots``: the shared memory, if any)."""
    buffer = bytearray(64 << 10)  # pages in slots leave only messages and what does not fit a slot to the pipe
    owner_key: str | None = None  # None: allocation pages
    while True:
        try:
            size = pages.recv_bytes_into(buffer)
            body: bytes | memoryview = memoryview(buffer)[:size]
        except multiprocessing.BufferTooShort as longer:
            body = longer.args[0]
            buffer = bytearray(len(body) * 2)
        except EOFError:
            return
        if not len(body):
            results.send_bytes(pickle.dumps((cpu_seconds(), peak_mb())))
            continue
        if body[0] == 0:
            if bytes(body[1:2]) != b"S":
                owner_key = bytes(body[2:]).decode() if bytes(body[1:2]) == b"J" else None
                continue
            assert slots is not None
            _, start, size = _SLOT.unpack(body)
            body = slots[start:start + size]
        parts = parts_of_page(body) if owner_key is None else job_page_parts(body, owner_key)
        if isinstance(body, memoryview):
            body.release()  # nothing decoded from a page refers to its bytes
        results.send_bytes(pickle.dumps(parts, protocol=pickle.HIGHEST_PROTOCOL))
        del body, parts


class _Worker:
    """The second process, its two pipes (raised to 1 MiB each) and the shared memory the pages are handed over in.

    A page is copied once, into a free slot of :data:`SLOTS` in memory
    shared with the process, which decodes it there; the pipe carries where
    it is. Through a pipe a page was copied twice, into the kernel and out of
    it again (ten million allocations: 20 GB of pages, two in three of them
    handed over). A page larger than a slot, and every page where shared
    memory cannot be made (/dev/shm missing or full), goes through the pipe.
    """

    def __init__(self) -> None:
        spawn = multiprocessing.get_context("spawn")
        pages_in, self.pages = spawn.Pipe(duplex=False)
        self.results, results_out = spawn.Pipe(duplex=False)
        for end in (self.pages, results_out):
            try:
                fcntl.fcntl(end.fileno(), _F_SETPIPE_SZ, PIPE_BYTES)
            except OSError:  # a lower limit (/proc/sys/fs/pipe-max-size): pages then wait for the reader
                pass
        try:
            self.shared: shared_memory.SharedMemory | None = shared_memory.SharedMemory(
                create=True, size=SLOTS * SLOT_BYTES)
        except OSError:  # no /dev/shm (or no room there): the pages go through the pipe
            self.shared = None
        self._free = list(range(SLOTS)) if self.shared is not None else []
        self._held: deque[int | None] = deque()  # the slot of each page sent (None: the pipe), in order
        self.process = spawn.Process(target=_serve, daemon=True, name="accounting-decoder",
                                     args=(pages_in, results_out, self.shared.name if self.shared else None))
        try:
            self.process.start()
        except BaseException:
            self._unlink()
            raise
        pages_in.close()
        results_out.close()
        self._buffer = bytearray(1 << 20)

    def send(self, body: bytes) -> None:
        """Hand a message (empty, or starting with a NUL) to the process: its answer is not waited for here."""
        try:
            self.pages.send_bytes(body)
        except OSError:  # the process is gone
            raise _broken() from None

    def send_page(self, body: bytes) -> None:
        """Hand a page to the process (its parts come back from :meth:`receive`, in the order sent)."""
        slot = self._free.pop() if self._free and len(body) <= SLOT_BYTES else None
        if slot is None:
            self.send(body)
        else:
            assert self.shared is not None
            start = slot * SLOT_BYTES
            self.shared.buf[start:start + len(body)] = body
            self.send(_SLOT.pack(b"\0S", start, len(body)))
        self._held.append(slot)

    def receive(self) -> Any:
        """The parts of the earliest page sent that has not been received (its slot is free again)."""
        parts = self._receive()
        slot = self._held.popleft()
        if slot is not None:
            self._free.append(slot)
        return parts

    def _receive(self) -> Any:
        try:
            size = self.results.recv_bytes_into(self._buffer)
            return pickle.loads(memoryview(self._buffer)[:size])
        except multiprocessing.BufferTooShort as longer:
            self._buffer = bytearray(len(longer.args[0]) * 2)
            return pickle.loads(longer.args[0])
        except (EOFError, OSError):
            raise _broken() from None

    def usage(self) -> tuple[float, float]:
        self.send(b"")
        return self._receive()  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.pages.close()
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.results.close()
        self._unlink()

    def _unlink(self) -> None:
        if self.shared is not None:
            self.shared.close()
            self.shared.unlink()
            self.shared = None


def _cpus() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _broken() -> KitError:
    return KitError("the process decoding Nomad's allocation listing ended without a result (killed, or out "
                    "of memory? see the journal of the accounting service); nothing past the last commit was "
                    "lost: run the collector again")


@dataclass
class ListingPage:
    """One page of the listing: its parts (computed in the second process), or its stubs (decoded here)."""

    index: int
    parts: PageParts | None = None
    body: bytes | None = None
    _stubs: list[Any] | None = None
    _decode: Callable[[bytes], list[Any]] | None = None

    def stubs(self) -> list[Any]:
        """The page's stubs, decoded here (once) if the second process computed its parts."""
        if self._stubs is None:
            assert self.body is not None and self._decode is not None
            self._stubs = self._decode(self.body)
        return self._stubs


class PageDecoder:
    """The listing's pages in order: decoded here, or past the first ``inline_pages`` mostly in a second process.

    ``decode`` turns a page's bytes into stubs here (and names a page that is
    not a listing). Once the second process runs, this process decodes one
    page in ``EVERY`` itself, so that neither waits for the other (its own
    share of a run, storing and looking up owners, is smaller than the second
    process's). Use as a context manager: leaving it stops the second
    process; :attr:`cpu` and :attr:`peak_mb` then hold its CPU seconds and
    peak resident memory (0 if it never started).
    """

    def __init__(self, bodies: Iterable[tuple[bytes, int]], decode: Callable[[bytes], list[Any]],
                 inline_pages: int | None = None) -> None:
        self._bodies = bodies
        self._head: list[tuple[bytes, int]] | None = None  # the first page, read by start()
        self._decode = decode
        if inline_pages is None:  # on one CPU the second process would only take turns with this one
            inline_pages = INLINE_PAGES if _cpus() > 1 else sys.maxsize
        self.inline_pages = inline_pages
        self._worker: _Worker | None = None
        self._kind = b"\0A"  # what the second process takes the pages it gets for (allocation pages at its start)
        self.cpu = 0.0
        self.peak_mb = 0.0

    def __enter__(self) -> "PageDecoder":
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        self.close(measure=kind is None)

    def start(self) -> None:
        """Read the listing's first page now (so that Nomad unreachable is named as the listing's failure)."""
        if self._head is None:
            self._bodies = iter(self._bodies)
            self._head = list(itertools.islice(self._bodies, 1))

    def __iter__(self) -> Iterator[ListingPage]:
        self.start()
        assert self._head is not None
        bodies, self._head = itertools.chain(self._head, self._bodies), []
        for body, index, parts in self._pipeline(bodies, b"\0A"):
            if parts is None:  # decoded here: plain JSON values, or the page's problem named
                yield ListingPage(index, _stubs=self._decode(body))
            else:
                yield ListingPage(index, parts=parts, body=body, _decode=self._decode)

    def job_pages(self, bodies: Iterable[tuple[bytes, int]], owner_key: str) -> Iterator[JobParts | bytes]:
        """The job listing's pages: :class:`JobParts` from the second process, or a page's bytes to decode here.

        Split as the allocation pages are (the first ``inline_pages`` here,
        then one in ``EVERY``); the process started here goes on with the
        allocation listing.
        """
        for body, _, parts in self._pipeline(iter(bodies), b"\0J" + owner_key.encode()):
            yield body if parts is None else parts

    def _pipeline(self, bodies: Iterator[tuple[bytes, int]], kind: bytes) -> Iterator[tuple[bytes, int, Any]]:
        """(body, index, what the second process returned or None) of each page, in listing order.

        ``kind`` tells the process what the pages are (sent before its first page of them).
        """
        for body, index in itertools.islice(bodies, self.inline_pages):
            yield body, index, None
        # in listing order: (body, index, True if the second process has it)
        window: deque[tuple[bytes, int, bool]] = deque()
        for count, (body, index) in enumerate(bodies, 1):
            # an empty message asks for usage, one starting with a NUL says what the pages are
            there = bool(body) and body[0] != 0 and count % EVERY != 0
            if there:
                if self._worker is None:
                    self._worker, self._kind = _Worker(), b"\0A"
                if self._kind != kind:
                    self._worker.send(kind)
                    self._kind = kind
                self._worker.send_page(body)
            window.append((body, index, there))
            sent = sum(1 for _, _, in_there in window if in_there)
            while window and (sent > DEPTH or not window[0][2]):
                sent -= window[0][2]
                yield self._done(*window.popleft())
        while window:
            yield self._done(*window.popleft())

    def _done(self, body: bytes, index: int, there: bool) -> tuple[bytes, int, Any]:
        return body, index, self._worker.receive() if there and self._worker is not None else None

    def close(self, measure: bool = True) -> None:
        """Stop the second process (after measuring it, unless the run failed)."""
        worker, self._worker = self._worker, None
        if worker is None:
            return
        try:
            if measure:
                self.cpu, self.peak_mb = worker.usage()
        except KitError:
            pass
        finally:
            worker.stop()
