"""Jobs over processes: dependencies respected, the longest kinds first, errors raised, cycles refused."""

from pathlib import Path

import pytest

from symptomfuse.parallel import run_graph


def _write_after(job: tuple[str, str, tuple[str, ...]]) -> str:
    """Write ``folder/name`` once every job it needs has written its file; fail if one has not."""
    folder, name, needs = job
    missing = [n for n in needs if not (Path(folder) / n).exists()]
    if missing:
        raise AssertionError(f"{name} started before {missing}")
    if name == "boom":
        raise RuntimeError("this job fails")
    (Path(folder) / name).write_text(name)
    return name.upper()


def _log_start(job: tuple[str, str, float]) -> None:
    """Append ``name`` to ``log`` as the job starts, then take ``seconds``."""
    import time

    log, name, seconds = job
    with open(log, "a") as f:
        f.write(name + "\n")
    time.sleep(seconds)


def _graph(folder: Path, names: dict[str, tuple[str, ...]]):
    jobs = {n: (str(folder), n, needs) for n, needs in names.items()}
    return jobs, {n: list(needs) for n, needs in names.items()}


def test_jobs_run_after_what_they_need_and_all_return(tmp_path):
    # a diamond, twice: each second-row job may start only when both first-row ones of its fold are done
    names = {"a0": (), "b0": (), "a1": (), "b1": (), "c0": ("a0", "b0"), "c1": ("a1", "b1"), "d": ("c0", "c1")}
    jobs, needs = _graph(tmp_path, names)
    done = []
    results = run_graph(_write_after, jobs, needs, workers=2, on_done=done.append)
    assert results == {n: n.upper() for n in names}
    assert sorted(done) == sorted(names) and done[-1] == "d"
    assert done.index("c0") > max(done.index("a0"), done.index("b0"))


def test_a_failing_job_raises_and_bad_graphs_are_refused(tmp_path):
    jobs, needs = _graph(tmp_path, {"a": (), "boom": ("a",), "after": ("boom",)})
    with pytest.raises(RuntimeError, match="this job fails"):
        run_graph(_write_after, jobs, needs, workers=2)
    assert not (tmp_path / "after").exists()  # never started: what it needed failed
    jobs, needs = _graph(tmp_path, {"x": ("y",), "y": ("x",)})
    with pytest.raises(ValueError, match="cycle"):
        run_graph(_write_after, jobs, needs, workers=2)
    jobs, needs = _graph(tmp_path, {"x": ("nowhere",)})
    with pytest.raises(ValueError, match="not given"):
        run_graph(_write_after, jobs, needs, workers=2)


def test_a_freed_worker_takes_the_kind_that_has_taken_longest(tmp_path):
    """One worker, jobs given short and long by turns: the first of each kind runs in the order given;
    after that the long ones (0.3 s) go before the short ones (none), whatever the order given."""
    log = tmp_path / "order.txt"
    given = {"s0": 0.0, "l0": 0.3, "s1": 0.0, "s2": 0.0, "l1": 0.3, "l2": 0.3}
    jobs = {name: (str(log), name, seconds) for name, seconds in given.items()}
    run_graph(_log_start, jobs, {}, workers=1, kind=lambda name: name[0])
    assert log.read_text().split() == ["s0", "l0", "l1", "l2", "s1", "s2"]
    log.unlink()
    run_graph(_log_start, jobs, {}, workers=1)  # no kinds: the order given
    assert log.read_text().split() == list(given)
