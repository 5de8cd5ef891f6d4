"""Newest-frame processing off the executor thread, with the statistics /diagnostics reports.

The subscription callback only hands its message over; a worker thread processes the
newest one. A frame replaced before the worker got to it counts as dropped: a slow model
never builds a queue, and the node reports how far behind the camera it runs. Frames the
node does not want at all (disabled, no model) count as ignored.
"""
from __future__ import annotations

import threading
import time
from collections import deque


class FrameWorker:
    def __init__(self, process, on_error):
        self._process, self._on_error = process, on_error
        self._lock = threading.Condition()
        self._latest = None
        self._stop = False
        self.last_error = ""  # why the newest failed frame failed, for /diagnostics
        self.received = self.processed = self.dropped = self.errors = self.ignored = 0
        self._latencies: deque[float] = deque(maxlen=100)
        self._done_times: deque[float] = deque(maxlen=100)
        self._thread = threading.Thread(target=self._run, name="frame_worker", daemon=True)
        self._thread.start()

    def submit(self, msg) -> None:
        with self._lock:
            self.received += 1
            if self._latest is not None:
                self.dropped += 1
            self._latest = (msg, time.perf_counter())
            self._lock.notify()

    def ignore(self) -> None:
        """A frame the node does not process at all (disabled, or no model loaded)."""
        with self._lock:
            self.received += 1
            self.ignored += 1

    def _run(self) -> None:
        while True:
            with self._lock:
                while self._latest is None and not self._stop:
                    self._lock.wait()
                if self._stop:
                    return
                (msg, t_in), self._latest = self._latest, None
            try:
                self._process(msg)
                self.processed += 1
                now = time.perf_counter()
                self._latencies.append(now - t_in)
                self._done_times.append(now)
            except Exception as e:  # noqa: BLE001 - the node reports bad frames and stays up
                self.errors += 1
                self.last_error = str(e) or type(e).__name__
                self._on_error(e)

    def stats(self) -> dict:
        lat = sorted(self._latencies)
        times = list(self._done_times)
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return {
            "rate_hz": round(rate, 2),
            "latency_ms_p50": round(1000 * lat[len(lat) // 2], 2) if lat else None,
            "latency_ms_max": round(1000 * lat[-1], 2) if lat else None,
            "frames_received": self.received,
            "frames_processed": self.processed,
            "frames_dropped": self.dropped,
            "frames_failed": self.errors,
            "frames_ignored": self.ignored,
            "last_frame_error": self.last_error,
        }

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify()
        self._thread.join(timeout=5)
