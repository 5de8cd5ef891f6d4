"""The model a node runs: loaded and checked off the executor thread, swapped whole.

Every node holds its model through a ModelHolder. A load opens the file, checks it (model
type and input size in the Detector/Segmenter constructors, then one run on a blank frame
whose outputs must be present and finite), hashes it for an id, and only then swaps it in
with one attribute assignment: frames in flight finish on the old model, the next one runs
on the new. A failed load keeps the old model (or none, at start-up) and records why.

No ROS here: the holder takes any logger with info/warning/error, so tests drive it directly.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from split_perception.atomic_io import file_sha256


@dataclass(frozen=True)
class LoadedModel:
    model: Any  # a Detector or Segmenter: callable on H x W x 3 uint8 frames, with .input_size, .backend, .runner
    model_id: str  # first 12 hex digits of the file's SHA-256: what /diagnostics shows
    source: Path


@dataclass(frozen=True)
class LoadResult:
    ok: bool
    message: str  # names the new model on success, says what is wrong on failure


class ModelCheckError(ValueError):
    """A model file that loads but does not behave like the model it claims to be."""


def file_id(path: Path) -> str:
    """Short content hash of a model file: the same file gives the same id on any machine."""
    return file_sha256(path)[:12]


def _label(path: str) -> str:
    return path or "the shipped default model"


def check_model(model) -> None:
    """Run `model` once on a blank frame of its input size: every output it returns must be
    there (the API's post-processing reads each by name) and finite."""
    size = model.input_size
    if not isinstance(size, int) or size <= 0:
        raise ModelCheckError(f"input size must be a positive number of pixels, got {size!r}")
    try:
        result = model(np.zeros((size, size, 3), np.uint8))
    except Exception as e:  # noqa: BLE001 - any failure here means the file is not the model it claims
        raise ModelCheckError(f"running it on a blank {size}x{size} frame failed: {type(e).__name__}: {e}") from e
    for f in dataclasses.fields(result):
        value = getattr(result, f.name)
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and not np.isfinite(value).all():
            raise ModelCheckError(f"output '{f.name}' is not finite on a blank {size}x{size} frame")


class ModelHolder:
    """Holds the current model of a node and swaps in new ones.

    open_model(path, backend) -> model loads a file ('' = the shipped default); settings are
    attributes applied to every model before it serves (e.g. a detector's threshold).
    load() runs in the calling thread (start-up, before the node spins); request() runs on the
    holder's loader thread and returns a Future of the LoadResult. Requests made while a load
    runs are merged: the newest (path, backend) loads next and every waiter gets its result.
    """

    def __init__(self, open_model: Callable[[str, str], Any], logger, settings: dict | None = None):
        self._open, self._log = open_model, logger
        self._settings = dict(settings or {})
        self._lock = threading.Lock()  # guards settings and the swap
        self._cv = threading.Condition()  # guards the request slot
        self._next: tuple[str, str] | None = None
        self._waiters: list[Future] = []
        self._closed = False
        self.current: LoadedModel | None = None
        self.loading: str | None = None  # the path being loaded, for /diagnostics
        self.error: str | None = None  # why the newest load failed; None once one succeeds
        self._thread = threading.Thread(target=self._run, name="model_loader", daemon=True)
        self._thread.start()

    @property
    def model(self):
        current = self.current
        return current.model if current is not None else None

    def configure(self, **settings) -> None:
        """Set model attributes now and for every model loaded later."""
        with self._lock:
            self._settings.update(settings)
            if self.current is not None:
                for k, v in settings.items():
                    setattr(self.current.model, k, v)

    def load(self, path: str, backend: str) -> LoadResult:
        """Open, check and swap in a model in this thread; on failure keep the current one."""
        label = _label(path)
        self.loading = label
        t0 = time.perf_counter()
        try:
            model = self._open(path, backend)
            check_model(model)
            source = Path(model.runner.source)
            loaded = LoadedModel(model, file_id(source), source)
        except Exception as e:  # noqa: BLE001 - reported (log, /diagnostics, service response), never swallowed
            reason = str(e) or type(e).__name__
            self.error = reason if label in reason else f"{label}: {reason}"  # loaders name the file themselves
            kept = f"still serving model {self.current.model_id}" if self.current else "no model is loaded"
            self._log.error(f"model load failed: {self.error} ({kept})")
            return LoadResult(False, f"model load failed: {self.error} ({kept})")
        finally:
            with self._cv:  # a request made meanwhile is loaded next: show that one
                self.loading = _label(self._next[0]) if self._next else None
        with self._lock:
            for k, v in self._settings.items():
                setattr(model, k, v)
            previous, self.current, self.error = self.current, loaded, None
        provider = getattr(model.runner, "provider", "")  # ONNX Runtime: the execution provider it picked
        message = (f"loaded model {loaded.model_id} ({source}, {model.backend}{f' {provider}' if provider else ''}, "
                   f"{model.input_size} px) in {time.perf_counter() - t0:.2f} s")
        if previous is not None:
            message += f"; replaced {previous.model_id}" if previous.model_id != loaded.model_id else "; same file as before"
        self._log.info(message)
        return LoadResult(True, message)

    def request(self, path: str, backend: str) -> Future:
        """Load on the loader thread; frames keep running on the current model meanwhile."""
        future: Future = Future()
        with self._cv:
            if self._closed:
                future.set_result(LoadResult(False, "the node is shutting down"))
                return future
            self._next = (path, backend)
            self._waiters.append(future)
            self.loading = _label(path)
            self._cv.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._cv:
                while self._next is None and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                (path, backend), waiters = self._next, self._waiters
                self._next, self._waiters = None, []
            result = self.load(path, backend)
            for future in waiters:
                future.set_result(result)

    def close(self) -> None:
        """Stop the loader thread (a load in progress finishes in the background: it is a daemon)."""
        with self._cv:
            self._closed = True
            waiters, self._waiters = self._waiters, []
            self._cv.notify()
        for future in waiters:
            future.set_result(LoadResult(False, "the node is shutting down"))
