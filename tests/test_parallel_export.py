"""export/parallel.py: artifacts exported N at a time in forked workers (export.build --jobs)."""
from __future__ import annotations

import os

from export import parallel


def _square_in_worker(task, bar):
    bar.set_postfix_str("working")
    bar.update(1)
    bar.write(f"task {task} done")
    return task * task, os.getpid()


def test_run_all_runs_every_task_in_forked_workers_and_reports_each_once(capsys):
    results = {}

    def on_result(i, r):
        assert i not in results, f"task {i} reported twice"
        results[i] = r

    parallel.run_all(list(range(5)), _square_in_worker, jobs=2, names=[f"t{i}" for i in range(5)], total_steps=2,
                     on_result=on_result)
    assert {i: r[0] for i, r in results.items()} == {i: i * i for i in range(5)}
    pids = {r[1] for r in results.values()}
    assert os.getpid() not in pids and 1 <= len(pids) <= 2  # two workers at most, never this process
    err = capsys.readouterr().err
    assert all(f"task {i} done" in err for i in range(5)) and "[5/5] t4" in err  # messages and bars reach us


def test_run_all_with_one_job_runs_here_in_order():
    order = []
    parallel.run_all([3, 1, 2], _square_in_worker, jobs=1, names=["a", "b", "c"], total_steps=1,
                     on_result=lambda i, r: order.append((i, r)))
    assert order == [(0, (9, os.getpid())), (1, (1, os.getpid())), (2, (4, os.getpid()))]


def _dies_on_two(task, bar):
    if task == 2:
        os._exit(9)  # what the OOM killer does to a worker: no exception, no result
    return task


def test_a_dead_worker_marks_what_did_not_finish_and_says_so(capsys):
    results = {}
    parallel.run_all([0, 1, 2, 3], _dies_on_two, jobs=2, names=list("abcd"), total_steps=1,
                     on_result=lambda i, r: results.__setitem__(i, r))
    assert set(results) == {0, 1, 2, 3} and results[2] is None  # every task answered, the dead one with None
    assert all(results[i] in (i, None) for i in results)
    assert "an export worker died" in capsys.readouterr().err
