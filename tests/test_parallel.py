"""Jobs over processes: dependencies respected, errors raised, cycles refused."""

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
