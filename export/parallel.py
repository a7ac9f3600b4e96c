"""Export artifacts several at a time: forked worker processes, one progress bar per artifact in the parent.

Lowering is single-threaded Python (torch.export, then ExecuTorch's edge and XNNPACK passes: ~45 of the ~50 s a
MiniLM int8 .pte takes), so on the 2-core reference machine two artifacts at a time shorten the export phase by
about 40% (docs/EXPORT.md). Workers are forked, not spawned, so they inherit the loaded models, tokenizer and
SmoothQuant factors (measured once, before the fork) instead of pickling or reloading them; each worker runs
torch on one thread, as PyTorch's intra-op pool is not fork-safe and the cores belong to the workers anyway.
A worker's progress and messages reach the parent through a queue, each task's closed by an end marker that the
parent waits for before it reports the result; results are returned in completion order.

Stopping (Ctrl-C, SIGTERM, or any exception in the parent): queued tasks are cancelled and the workers are
terminated at once, not waited for; a terminated worker removes its half-written temp paths and exits. Workers
ignore SIGINT (a terminal sends it to the whole process group): the parent alone decides, and prints one line.
SIGINT and SIGTERM are blocked while the workers fork: a handler that raises inside an at-fork hook (logging
has one) would see its exception ignored, and the stop lost.
"""
from __future__ import annotations

import multiprocessing
import os
import queue as queue_lib
import signal
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

_INHERITED: dict = {}  # set before the pool forks: the task runner and the progress queue
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class QueueProgress:
    """The part of tqdm's interface a task uses (update / set_postfix_str / write), sent to the parent's bar."""

    def __init__(self, messages, index: int):
        self.messages, self.index = messages, index

    def update(self, n: int = 1) -> None:
        self.messages.put((self.index, "update", n))

    def set_postfix_str(self, text: str) -> None:
        self.messages.put((self.index, "postfix", text))

    def write(self, text: str) -> None:
        self.messages.put((self.index, "write", text))


def _exit_now(signum, frame) -> None:
    from compkit.files import remove_live_temps

    remove_live_temps()
    os._exit(128 + signum)  # not SystemExit: the pool's worker loop would catch it and take the next task


def _init_worker() -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_now)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)  # blocked by the parent around the fork
    torch.set_num_threads(1)


def _stop_workers(pool: ProcessPoolExecutor, grace: float = 2.0) -> None:
    """Cancel queued tasks and end the workers now: SIGTERM (they clean up), SIGKILL after `grace` seconds."""
    procs = list((getattr(pool, "_processes", None) or {}).values())  # no public handle before Python 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        if p.is_alive():
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
        if p.is_alive():
            p.kill()
            p.join(1.0)


def _run_in_worker(index: int, task):
    result = _INHERITED["run"](task, QueueProgress(_INHERITED["messages"], index))
    # The queue's feeder thread and the pool's result pipe race: without this marker the parent could see the
    # result before the task's last messages and lose them (the last task's, once the loop has ended).
    _INHERITED["messages"].put((index, "end", None))
    return index, result


def run_all(tasks: list, run, jobs: int, names: list[str], total_steps: int, on_result, poll=lambda: None) -> None:
    """Call run(task, progress) for every task, `jobs` at a time, and on_result(index, result) in this process as
    each one finishes. If a worker dies (killed, out of memory), on_result(index, None) for every task that did
    not finish, with the reason printed. jobs <= 1 runs the tasks here, one after another. poll() is called
    between tasks and while waiting: it may raise to stop everything (a signal noted but not yet acted on)."""
    from tqdm import tqdm

    def new_bar(i):
        return tqdm(total=total_steps, desc=f"[{i + 1}/{len(tasks)}] {names[i]}", leave=True, file=sys.stderr,
                    dynamic_ncols=True)

    if jobs <= 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            poll()
            with new_bar(i) as bar:
                result = run(task, bar)
                bar.update(bar.total - bar.n)  # tasks may skip steps
            on_result(i, result)
        return

    context = multiprocessing.get_context("fork")
    messages = context.Queue()
    _INHERITED.update(run=run, messages=messages)
    bars, finished, ended = {}, set(), set()

    def bar(i):
        if i not in bars:
            bars[i] = new_bar(i)
        return bars[i]

    def drain(timeout: float) -> None:
        while True:
            try:
                i, kind, value = messages.get(timeout=timeout)
            except queue_lib.Empty:
                return
            timeout = 0  # after the first message, take only what is already there
            if kind == "end":
                ended.add(i)
            elif kind == "write":
                tqdm.write(value, file=sys.stderr)
            elif i not in finished:
                getattr(bar(i), "update" if kind == "update" else "set_postfix_str")(value)

    def finish(i, result):
        finished.add(i)
        b = bar(i)
        b.update(b.total - b.n)
        b.close()
        on_result(i, result)

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_init_worker)
    try:
        try:
            blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
            try:  # the first submit forks every worker
                pending = {pool.submit(_run_in_worker, i, task) for i, task in enumerate(tasks)}
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
            while pending:
                poll()
                drain(0.2)
                done, pending = wait(pending, timeout=0, return_when=FIRST_COMPLETED)
                for future in done:
                    i, result = future.result()
                    deadline = time.monotonic() + 5.0  # bounded: a lost marker costs a message, never a hang
                    drain(0)
                    while i not in ended and time.monotonic() < deadline:
                        drain(0.05)
                    finish(i, result)
        except BrokenProcessPool as e:
            drain(0)
            print(f"error: an export worker died ({e}); the artifacts it had not finished are marked failed",
                  file=sys.stderr)
            for i in range(len(tasks)):
                if i not in finished:
                    finish(i, None)
        pool.shutdown(wait=True)
    except BaseException:  # a signal or an error here: nothing queued may still run, no worker may outlive us
        _stop_workers(pool)
        raise
    finally:
        _INHERITED.clear()
        for b in bars.values():
            b.close()
