"""``--executor ray``: a run's chunks spread over Ray actors, each holding one model replica.

The driver (the ``tollgate`` process) keeps every job it had: it plans the run, so examples the
cache holds are never sent; it scores every answer and is the store's only writer, committing
each chunk in its own short transaction as the chunk comes back. Actors only answer: each loads
its replica once (through the adapter registry, exactly as a local run would), checks that it
sees the model the driver fingerprinted, and answers :class:`~harness.executors.Work` chunks.

A replica whose process dies (killed, out of memory, its node lost) is replaced by a fresh one
and the chunks it held are sent again, so each example is answered and stored once; a chunk
that kills ``max_attempts`` replicas in a row ends the run. An error the model *raises* is not
retried: it ends the run as it would locally. Ray is imported only here, only when chosen.
"""

from __future__ import annotations

import importlib
import socket
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.adapters.base import Generation, ModelConfig
from harness.errors import TollgateInputError
from harness.executors import Progress, Waves, Work, answer_work

INSTALL_HINT = "Install it with: pip install 'tollgate[ray]'  (or: pip install 'ray[default]>=2.40')."


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise TollgateInputError("--executor ray needs Ray, which is not installed.", field="--executor",
                                 hint=INSTALL_HINT) from None
    return ray


# -- the replica (runs inside a Ray actor) ----------------------------------------------------------------
def model_spec(cfg: ModelConfig, load_module: str) -> dict[str, Any]:
    """A model entry as plain data: a worker rebuilds the config after importing the adapter's module
    (a project plugin's module is found on the project folder, as on the driver)."""
    return {"name": cfg.name, "adapter": cfg.adapter, "options": cfg.options.model_dump(),
            "generation": cfg.generation, "path": cfg.path, "url": cfg.url, "role": cfg.role,
            "version": cfg.version, "root": str(cfg.root), "module": load_module}


def config_from_spec(spec: dict[str, Any]) -> ModelConfig:
    from harness.adapters import adapters

    if spec["root"] not in sys.path:
        sys.path.insert(0, spec["root"])
    importlib.import_module(spec["module"])
    adapter = adapters.get(spec["adapter"])
    return ModelConfig(name=spec["name"], adapter=spec["adapter"],
                       options=adapter.options.model_validate(spec["options"]), generation=spec["generation"],
                       path=spec["path"], url=spec["url"], role=spec["role"], version=spec["version"],
                       root=Path(spec["root"]))


class Replica:
    """One model replica. A replica that cannot load (or sees other weights than the driver) keeps
    the error and raises it on every call, so the driver reports it instead of retrying it."""

    def __init__(self, spec: dict[str, Any], fingerprint: str) -> None:
        import threading

        self.model: Any = None
        self.error: Exception | None = None
        self.lock = threading.Lock()  # the actor takes two chunks at once; only a served model answers both
        try:
            from harness.adapters import adapters

            cfg = config_from_spec(spec)
            adapter = adapters.get(cfg.adapter)
            mine = adapter.fingerprint(cfg)
            if mine != fingerprint:
                raise TollgateInputError(
                    f"the replica on {socket.gethostname()} sees a different model '{cfg.name}' than this machine "
                    f"(fingerprint {mine[:12]} vs {fingerprint[:12]}); every Ray node needs the same model files, "
                    f"project folder and code at the same path.", field="--executor")
            self.model = adapter.load(cfg)
        except Exception as exc:
            self.error = exc

    def answer(self, work: Work) -> list[Generation]:
        if self.error is not None:
            raise self.error
        if getattr(self.model, "max_in_flight", None):
            return answer_work(self.model, work)
        with self.lock:
            return answer_work(self.model, work)


# -- the driver side ----------------------------------------------------------------------------------------
@dataclass
class _Slot:
    actor: Any
    generation: int = 0  # bumped at each replacement, so one death replaces the actor once
    load: int = 0  # chunks sent to it and not yet back


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, replicas: int | None = None, *, num_cpus: float = 1.0,
                 num_gpus: float = 0.0, max_attempts: int = 3, depth: int = 2,
                 init_options: dict[str, Any] | None = None) -> None:
        if replicas is not None and replicas < 1:
            raise TollgateInputError(f"must be at least 1, got {replicas}.", field="--replicas")
        if num_cpus < 0 or num_gpus < 0 or (num_cpus == 0 and num_gpus == 0):
            raise TollgateInputError("a replica needs some CPUs or GPUs.", field="--replica-cpus")
        self.ray = import_ray()
        self.address = address
        self.replicas = replicas
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self.max_attempts = max_attempts
        self.depth = depth  # chunks queued per actor, so it never waits for the driver to commit
        self.init_options = init_options or {}
        self._started = False
        self._slots: list[_Slot] = []
        self._model_key: tuple[str, str] | None = None
        self._spec: dict[str, Any] = {}
        self._fingerprint = ""
        self._size = 0
        self.replaced = 0  # replicas lost and replaced, over this executor's life

    # connection and pool ---------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        import logging

        # "local": a new cluster for this command, even if 'ray start' left one running (join it with 'auto')
        options = {"address": self.address or "local", "include_dashboard": False, "log_to_driver": False,
                   "logging_level": logging.ERROR, **self.init_options}
        try:
            ray.init(**options)
        except (ConnectionError, ValueError, RuntimeError, TimeoutError) as exc:
            raise TollgateInputError(f"cannot start or reach the Ray cluster at {self.address or 'a new local one'}: "
                                     f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}.",
                                     field="--ray-address") from None
        self._started = True

    def _capacity(self) -> int:
        resources = self.ray.cluster_resources()
        fit = int(resources.get("GPU", 0) // self.num_gpus) if self.num_gpus else 10**9
        if self.num_cpus:
            fit = min(fit, int(resources.get("CPU", 0) // self.num_cpus))
        if fit < 1:
            raise TollgateInputError(f"the Ray cluster ({resources.get('CPU', 0):g} CPUs, {resources.get('GPU', 0):g} "
                                     f"GPUs) cannot hold one replica of {self.num_cpus:g} CPUs and "
                                     f"{self.num_gpus:g} GPUs.", field="--replicas")
        if self.replicas is None:
            return fit
        if self.replicas > fit:
            print(f"warning: the Ray cluster holds {fit} replica(s) of this size, not {self.replicas}; using {fit}.",
                  file=sys.stderr)
        return min(self.replicas, fit)

    def _new_actor(self) -> Any:
        remote = self.ray.remote(Replica).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_restarts=0,
                                                  max_concurrency=self.depth)
        return remote.remote(self._spec, self._fingerprint)

    def _pool(self, handle: Any, chunks: int) -> list[_Slot]:
        key = (handle.cfg.name, handle.fingerprint)
        if key != self._model_key:
            self._kill_all()
            self._model_key = key
            self._spec = model_spec(handle.cfg, handle.spec.load.__module__)
            self._fingerprint = handle.fingerprint
            self._size = self._capacity()
        while len(self._slots) < min(self._size, chunks):
            self._slots.append(_Slot(self._new_actor()))
        return self._slots

    def _replace(self, slot: _Slot) -> None:
        self.ray.kill(slot.actor, no_restart=True)
        slot.actor = self._new_actor()
        slot.generation += 1
        self.replaced += 1

    # answering ------------------------------------------------------------------------------------------
    def answer(self, handle: Any, waves: Waves[Any], progress: Progress) -> Iterator[tuple[Any, list[Generation]]]:
        chunks = sum(len(w) for w in waves)
        if not chunks:
            return
        self._connect()
        slots = self._pool(handle, chunks)
        for wave in waves:
            yield from self._wave(slots, wave, progress)

    def _wave(self, slots: list[_Slot], wave: Any, progress: Progress) -> Iterator[tuple[Any, list[Generation]]]:
        ray = self.ray
        lost = (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.ObjectLostError)
        queue = deque((key, work, 1) for key, work in wave)
        inflight: dict[Any, tuple[_Slot, int, Any, Work, int]] = {}
        try:
            while queue or inflight:
                for _ in range(self.depth):  # breadth first: every replica gets work before any gets two
                    for slot in slots:
                        if queue and slot.load < self.depth:
                            key, work, attempt = queue.popleft()
                            inflight[slot.actor.answer.remote(work)] = (slot, slot.generation, key, work, attempt)
                            slot.load += 1
                [ref], _ = ray.wait(list(inflight), num_returns=1)
                slot, generation, key, work, attempt = inflight.pop(ref)
                slot.load -= 1
                try:
                    gens = ray.get(ref)
                except lost as exc:
                    if attempt >= self.max_attempts:
                        raise RuntimeError(f"a chunk of {len(work)} examples lost {attempt} Ray replicas in a row; "
                                           f"last: {type(exc).__name__}: {str(exc).splitlines()[0]}") from None
                    if slot.generation == generation:
                        self._replace(slot)
                    queue.appendleft((key, work, attempt + 1))
                    continue
                except ray.exceptions.RayTaskError as exc:  # the model itself raised: as a local run would
                    cause = getattr(exc, "cause", None)
                    if isinstance(cause, Exception):
                        raise cause from None
                    raise
                progress(len(work))
                yield key, gens
        finally:
            for ref in inflight:  # the run stopped early: drop what was still queued
                try:
                    ray.cancel(ref)
                except Exception:
                    pass
            for slot in slots:
                slot.load = 0

    def _kill_all(self) -> None:
        for slot in self._slots:
            try:
                self.ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
        self._slots = []

    def close(self) -> None:
        if self.ray.is_initialized():
            self._kill_all()
            if self._started:
                self.ray.shutdown()
        self._model_key = None
