"""Where a run's model calls happen: here, one chunk after another (``local``), or spread over the
replicas of a Ray cluster (``ray``, :mod:`harness.executor_ray`).

An executor only answers. The runner plans the work (what the cache already holds is never sent),
scores every answer and alone writes the store, one short transaction per chunk, as each chunk
comes back. The work is given in *waves*: every chunk of a wave is answered (and, by the runner,
committed) before any chunk of the next wave is handed back, so behavioural examples are scored
only once the answers they compare with are stored.
"""

from __future__ import annotations

import argparse
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from harness.errors import TollgateInputError
from harness.registry import Registry

if TYPE_CHECKING:  # the command line imports this module for its flags: keep it light
    from harness.adapters.base import Generation, GenerationSettings, Model

K = TypeVar("K")
Progress = Callable[[int], None]


@dataclass(frozen=True)
class Work:
    """One chunk's request to the model, as plain data a remote worker can answer without the suite:
    prompts to continue (``generate``), or prompts with their candidate answers (``choice``)."""

    task: str
    prompts: tuple[str, ...]
    settings: GenerationSettings
    choices: tuple[tuple[str, ...], ...] | None = None
    delimiter: str = " "

    def __len__(self) -> int:
        return len(self.prompts)


def answer_work(model: Model, work: Work, progress: Progress | None = None) -> list[Generation]:
    """One answer per prompt: generated text, or the choice with the highest log-likelihood."""
    from harness.adapters.base import Generation
    from harness.checks import pick_choice

    if work.task != "choice":
        return model.generate(list(work.prompts), work.settings, progress=progress)
    pairs, spans = [], []
    choices = work.choices or tuple(() for _ in work.prompts)
    for prompt, options in zip(work.prompts, choices, strict=True):
        spans.append((len(pairs), len(pairs) + len(options)))
        pairs.extend((prompt, work.delimiter + c) for c in options)
    lls = model.loglikelihood(pairs)
    out = []
    for options, (a, b) in zip(choices, spans, strict=True):
        mine = lls[a:b]
        err = next((ll.error for ll in mine if ll.error), None)
        lps = [ll.logprob for ll in mine]
        if err:
            out.append(Generation(None, sum(ll.latency_ms for ll in mine), error=err))
            continue
        out.append(Generation(options[pick_choice(lps, list(options))], sum(ll.latency_ms for ll in mine),
                              details={"logprobs": lps, "is_greedy": [ll.is_greedy for ll in mine],
                                       "n_tokens": [ll.n_tokens for ll in mine]}))
    if progress:
        progress(len(work))
    return out


Waves = Sequence[Sequence[tuple[K, Work]]]


class Executor(Protocol):
    """Answers waves of chunks for one model; yields ``(key, answers)`` per chunk as it completes."""

    name: str

    def answer(self, handle: Any, waves: Waves[K], progress: Progress) -> Iterator[tuple[K, list[Generation]]]: ...

    def close(self) -> None: ...


def chunks_ahead(model: Any, chunk_size: int) -> int:
    """How many chunks to answer at once: one, unless the model keeps several requests in flight
    itself (``max_in_flight``, as a served model does), then enough to keep them all busy while the
    driver commits, plus one."""
    in_flight = getattr(model, "max_in_flight", None)
    if not isinstance(in_flight, int) or in_flight < 1:
        return 1
    return -(-in_flight // max(1, chunk_size)) + 1


class LocalExecutor:
    """The model loaded in this process. Chunks are answered one after another; for a model that
    keeps requests in flight (a served one), the next chunks are sent while one is being committed,
    so the server always has ``concurrency`` requests, never a pause at each chunk's slowest one."""

    name = "local"

    def answer(self, handle: Any, waves: Waves[K], progress: Progress) -> Iterator[tuple[K, list[Generation]]]:
        for wave in waves:
            if not wave:
                continue
            model = handle.get()
            ahead = chunks_ahead(model, len(wave[0][1]))
            if ahead == 1:
                for key, work in wave:
                    yield key, answer_work(model, work, progress)
                continue
            from concurrent.futures import ThreadPoolExecutor

            pool = ThreadPoolExecutor(max_workers=ahead, thread_name_prefix="tollgate-chunk")
            try:
                todo = iter(wave)
                running: deque[tuple[K, Any]] = deque()
                for key, work in todo:
                    running.append((key, pool.submit(answer_work, model, work, progress)))
                    if len(running) >= ahead:
                        done_key, fut = running.popleft()
                        yield done_key, fut.result()
                while running:
                    done_key, fut = running.popleft()
                    yield done_key, fut.result()
            finally:
                pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        pass


def _local(**_: Any) -> Executor:
    return LocalExecutor()


def _ray(**options: Any) -> Executor:
    from harness.executor_ray import RayExecutor

    return RayExecutor(**options)


executors: Registry[Callable[..., Executor]] = Registry("executor")
executors.register("local")(_local)
executors.register("ray")(_ray)


def make_executor(name: str = "local", **options: Any) -> Executor:
    """The executor registered as ``name``; options it does not use are ignored by ``local``."""
    return executors.get(name, field="--executor")(**options)


# -- command line ---------------------------------------------------------------------------------------
def add_executor_arguments(p: argparse.ArgumentParser) -> None:
    """``--executor``, ``--ray-address``, ``--replicas``, ``--replica-cpus``, ``--replica-gpus``."""
    p.add_argument("--executor", choices=executors.names(), default="local",
                   help="where the model runs: here (local, default) or on Ray actors, one model replica each "
                        "(needs: pip install 'tollgate[ray]')")
    p.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join: 'auto' (a cluster started with 'ray start' on this machine), "
                        "'ray://HOST:10001' or HOST:PORT; default: start a local one for this command")
    p.add_argument("--replicas", type=int, metavar="N",
                   help="model replicas (Ray actors); default: as many as the cluster's CPUs (GPUs with "
                        "--replica-gpus) allow")
    p.add_argument("--replica-cpus", type=float, default=1.0, metavar="N", help="CPUs per replica (default 1)")
    p.add_argument("--replica-gpus", type=float, default=0.0, metavar="N", help="GPUs per replica (default 0)")


def executor_from_args(args: argparse.Namespace) -> Executor:
    name = getattr(args, "executor", None) or "local"
    ray_only = {"--ray-address": args.ray_address, "--replicas": args.replicas}
    if name == "local":
        used = [flag for flag, value in ray_only.items() if value is not None]
        if used:
            raise TollgateInputError(f"{used[0]} needs --executor ray.", field=used[0])
        return LocalExecutor()
    return make_executor(name, address=args.ray_address, replicas=args.replicas,
                         num_cpus=args.replica_cpus, num_gpus=args.replica_gpus)
