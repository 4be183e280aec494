"""Saliency maps computed ahead of the question, on one low-priority thread.

After a slice's stage and map are shown, a user often asks for the map of another class next. `MapsAhead`
computes those maps on a worker thread that runs at the lowest CPU priority (`nice 19` for that thread alone),
and only while a core is idle (`idle_core`), so it only takes CPU that the sessions leave idle, and keeps them by content (the slice's bytes, class, layer,
method). A request for a map that is ready costs nothing; one that is not ready yet is computed on the asking
thread at once (the queued job is dropped), so nobody waits behind the low-priority worker.

    maps = MapsAhead(lambda image, target, layer, method: explain(predictor, image, target=target, ...))
    maps.get(image, 2, "layer2", "integrated_gradients")           # now, or from the store
    maps.ahead(image, [0, 1, 3], "layer2", "integrated_gradients")  # queue the others

The result is the same object `compute` returns for the same arguments: the store only saves the time.
"""
from __future__ import annotations

import atexit
import hashlib
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable

import numpy as np

log = logging.getLogger(__name__)

Key = tuple[str, int, str, str]


def content_key(image: np.ndarray, target: int, layer: str, method: str) -> Key:
    """The store's key: a digest of the slice's pixels and shape, the class, the layer and the method."""
    image = np.ascontiguousarray(image)
    digest = hashlib.blake2b(image.tobytes(), digest_size=16)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    return digest.hexdigest(), int(target), str(layer), str(method)


def idle_core(interval: float = 0.2) -> bool:
    """Whether at least one core's worth of CPU was idle over `interval` seconds (Linux /proc/stat; True where it
    cannot be read). Under load the low-priority worker would still cost the sessions something (Python holds one
    lock for the whole process while it steps Captum's loop), so it waits for an idle core."""
    def sample():
        with open("/proc/stat") as fh:
            values = [int(v) for v in fh.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total (jiffies over all cores)
    try:
        idle0, total0 = sample()
        time.sleep(interval)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return True
    cores = os.cpu_count() or 1
    return total1 > total0 and (idle1 - idle0) / (total1 - total0) * cores >= 1.0


def lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (Linux schedules threads one by one; elsewhere a no-op)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: the worker still runs, at normal priority
        log.debug("could not lower the map worker's priority: %s", exc)


class MapsAhead:
    """A bounded store of maps by content, filled on demand or ahead of time by one low-priority worker.

    compute(image, target, layer, method) -> the map; it must be safe to call from two threads at once (the
    hook-free methods are; `model.qualify.explain.explain` locks the hooked ones itself).
    max_entries: maps kept (least recently used dropped); max_pending: queued jobs kept (oldest dropped), so a
    burst of uploads never builds a backlog of stale work.
    """

    def __init__(self, compute: Callable, *, max_entries: int = 64, max_pending: int = 12,
                 idle: Callable[[], bool] = idle_core):
        self._compute = compute
        self._idle = idle  # the worker starts a job only when this says the machine has a core to spare
        self._store: OrderedDict[Key, object] = OrderedDict()
        self._max_entries = max_entries
        self._pending: deque[tuple[Key, tuple]] = deque(maxlen=max_pending)
        self._busy: Key | None = None  # the job the worker is computing now
        self._ready = threading.Condition()
        self._worker: threading.Thread | None = None
        self._stopped = False
        self.computed_ahead = 0  # maps the worker computed (for tests and benchmarks)
        self.served_ahead = 0  # requests answered from the store with a map computed ahead

    # ------------------------------------------------------------------ asking
    def get(self, image: np.ndarray, target: int, layer: str, method: str):
        """The map, from the store when it is there, else computed now on this thread."""
        key = content_key(image, target, layer, method)
        with self._ready:
            if key in self._store:
                self._store.move_to_end(key)
                value, ahead = self._store[key]
                if ahead:
                    self.served_ahead += 1
                return value
            # computed here now: the worker need not do it again
            self._pending = deque(((k, a) for k, a in self._pending if k != key), maxlen=self._pending.maxlen)
        value = self._compute(image, target, layer, method)
        self._keep(key, value, ahead=False)
        return value

    def ahead(self, image: np.ndarray, targets: Iterable[int], layer: str, method: str) -> None:
        """Queue these classes' maps for the worker (those stored or queued already are skipped)."""
        image = np.array(image, copy=True)  # the caller may reuse its buffer
        with self._ready:
            if self._stopped:
                return
            queued = {k for k, _ in self._pending}
            for target in targets:
                key = content_key(image, target, layer, method)
                if key not in self._store and key not in queued and key != self._busy:
                    self._pending.append((key, (image, int(target), layer, method)))
            if self._pending:
                self._start()
                self._ready.notify()

    def pending(self) -> int:
        with self._ready:
            return len(self._pending) + (self._busy is not None)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is queued or running (tests, benchmarks). Returns False on timeout."""
        with self._ready:
            return self._ready.wait_for(lambda: not self._pending and self._busy is None, timeout)

    # ------------------------------------------------------------------ the worker
    def _keep(self, key: Key, value, ahead: bool) -> None:
        with self._ready:
            if key not in self._store:
                self._store[key] = (value, ahead)
            self._store.move_to_end(key)
            while len(self._store) > self._max_entries:
                self._store.popitem(last=False)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current job (at exit: a thread inside torch when the interpreter ends aborts
        the process)."""
        with self._ready:
            self._stopped = True
            self._pending.clear()
            self._ready.notify_all()
        if self._worker is not None:
            self._worker.join(timeout)

    def _start(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            if self._stopped:
                return
            self._worker = threading.Thread(target=self._run, name="maps-ahead", daemon=True)
            self._worker.start()
            atexit.register(self.close)

    def _run(self) -> None:
        lowest_priority()
        while True:
            with self._ready:
                self._ready.wait_for(lambda: bool(self._pending) or self._stopped)
                if self._stopped:
                    return
            if not self._idle():  # busy machine: wait (newer jobs push the oldest out of the bounded queue)
                time.sleep(0.5)
                continue
            with self._ready:
                if not self._pending:
                    continue
                key, args = self._pending.popleft()
                if key in self._store:
                    continue
                self._busy = key
            try:
                value = self._compute(*args)
            except Exception:  # noqa: BLE001 - a map computed ahead is optional: the asking thread will compute it
                log.exception("computing a map ahead failed")
                value = None
            with self._ready:
                self._busy = None
                if value is not None:
                    self.computed_ahead += 1
                    self._keep(key, value, ahead=True)
                self._ready.notify_all()
