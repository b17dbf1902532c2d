import subprocess
import sys

import pytest

from symptomfuse import NOTICE
from symptomfuse.cli import main


@pytest.mark.parametrize("cmd", ["synth", "curate"])
def test_help_explains_with_an_example(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([cmd, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and f"symptomfuse {cmd}" in out


def test_curate_help_names_every_quarantine_reason_and_no_default_twice(capsys):
    from symptomfuse.data.manifest import REASONS

    with pytest.raises(SystemExit):
        main(["curate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert [r for r in REASONS if r not in out] == []
    assert "(default: OUT/cache) (default" not in out and "feature cache folder (default: OUT/cache)" in out


def test_top_level_help_carries_the_notice():
    run = subprocess.run([sys.executable, "-m", "symptomfuse.cli", "--help"], capture_output=True, text=True)
    assert run.returncode == 0 and NOTICE in run.stdout and "curate" in run.stdout


def test_synth_rejects_bad_options(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["synth", "--out", str(tmp_path), "--people", "1"])
    assert e.value.code == 2
    assert "--people" in capsys.readouterr().err


# Wrong invocations across the commands. Each must exit 2 with a message that says what is wrong, before
# any data is loaded, and never with a traceback. (The README's troubleshooting table lists them.)
WRONG = [
    (["train", "{cur}", "--out", "{tmp}/r", "--modalities", "accel"], "accel"),
    (["train", "{cur}", "--out", "{tmp}/r", "--late", "foo"], "late fusion"),
    (["train", "{cur}", "--out", "{tmp}/r", "--fusions", "nope"], "unknown fusion"),
    (["train", "{cur}", "--out", "{tmp}/r", "--baselines", "svm"], "unknown baseline"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder", "audio=nope"], "unknown encoder"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder", "accel=mlp"], "MODALITY=ENCODER"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"audio": {"bogus": 1}}'], "takes no"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", "[1, 2]"], "JSON object"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", "{bad"], "not valid JSON"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"video2": {}}'], "not trained here"),
    # values that build no network, or none that runs on the curated windows, or none that fits in memory
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"audio": {"channels": "abc"}}'], "cannot be built"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"audio": {"dim": -5}}'], "negative dimension"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"audio": {"dim": 0}}'], "embeddings of size 0"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"keypoints": {"levels": -1}}'], "cannot be built or run"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"audio": {"dim": 100000000}}'], "GiB to train"),
    (["train", "{cur}", "--out", "{tmp}/r", "--encoder-args", '{"audio": {"n_mels": 3}}'], "n_mels is 64 in the curated data, not 3"),
    (["train", "{cur}", "--out", "{tmp}/r", "--epochs", "0"], "--epochs"),
    (["train", "{cur}", "--out", "{tmp}/r", "--lr", "nan"], "finite"),
    (["train", "{cur}", "--out", "{tmp}/r", "--folds", "1"], "--folds"),
    (["train", "{cur}", "--out", "{tmp}/r", "--modality-dropout", "1"], "--modality-dropout"),
    (["train", "{cur}", "--out", "{tmp}/r", "--split", "record"], "--allow-leaky-split"),
    (["train", "{cur}", "--out", "{tmp}/r", "--unit", "person", "--finetune-fusion"], "--unit recording"),
    (["train", "{tmp}/nowhere", "--out", "{tmp}/r"], "not a curated data set"),
    (["curate", "--out", "{tmp}/c"], "manifest"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--window", "inf"], "finite"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--window", "0"], "--window"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--n-mels", "0"], "--n-mels"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--n-mels", "many"], "--n-mels"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--frame-size", "63x48"], "even"),
    # sizes that would fill the memory (a MemoryError before) or leave mel bands empty
    (["curate", "{manifest}", "--out", "{tmp}/c", "--frame-size", "100000x100000"], "at most 1024 on a side"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--frame-size", "1024x1024", "--fps", "240", "--window", "30"],
     "at most 1): make the frames"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--hop", "1e-9"], "hops of at least 0.01 s"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--n-mels", "128"], "1 mel band(s) would hold none of the 257"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--n-mels", "100000"], "more mel bands than the 257"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--label-map", "a=b,a=c"], "maps 'a' twice"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--modalities", "accel"], "accel"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--modalities", "video", "--n-mels", "40"], "not curated"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--labels", "a,a"], "repeats"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--labels", " , "], "names no class"),  # quarantined every row
    (["curate", "{manifest}", "--out", "{tmp}/c", "--modalities", ""], "names no modality"),  # the same
    (["curate", "--out", "{tmp}/c", "--table", "nameonly"], "NAME=FILE"),
    (["curate", "--out", "{tmp}/c", "--table", "t={tmp}/missing.csv"], "no such file"),
    (["curate", "{manifest}", "--out", "{tmp}/c", "--person-pattern", "("], "regular expression"),
    (["curate", "{tmp}/missing.csv", "--out", "{tmp}/c"], "manifest not found"),
    (["evaluate", "{tmp}/nowhere"], "not a run folder"),
    (["evaluate", "{tmp}/nowhere", "--abstain-band", "0.7"], "--abstain-band"),
    (["evaluate", "{tmp}/nowhere", "--subgroup-cols", "Sex"], "give it too"),  # was ignored without a word
    (["export", "{tmp}/nowhere", "--out", "{tmp}/e"], "not a run folder"),
    (["export", "{tmp}/nowhere", "--out", "{tmp}/e", "--fold", "-1"], "--fold"),
    (["stream", "--model", "{tmp}/nowhere"], "give a FILE"),
    (["stream", "{manifest}", "--model", "{tmp}/nowhere", "--smooth", "0"], "--smooth"),
    (["stream", "{manifest}", "--model", "{tmp}/nowhere", "--no-view"], "would show nothing"),  # ran silently
    (["stream", "{manifest}", "--model", "{tmp}/nowhere", "--update-every", "1e-9"], "must be >= 0.01"),  # never ended
    (["serve", "--demo", "--update-every", "0.001"], "must be >= 0.01"),
    (["serve", "--port", "99999", "--demo"], "--port"),
    (["serve"], "--model"),
    (["synth", "--out", "{tmp}/s", "--people", "1"], "--people"),
    (["synth", "--out", "{tmp}/s", "--duration", "nan"], "finite"),
    (["synth", "--out", "{tmp}/s", "--tasks", "apart"], "--tasks"),
    (["synth", "--out", "{tmp}/s", "--size", "100000x100000"], "at most 1920 on a side"),  # a MemoryError before
    (["synth", "--out", "{tmp}/s", "--size", "161x121"], "must be even"),  # the H.264 encoder's traceback before
    (["synth", "--out", "{tmp}/s", "--voice-only", "0.9"], "phenotype shares"),
]


@pytest.fixture
def bare_curated(tmp_path):
    """A curated folder's contract and a manifest, with no data behind them: nothing may be loaded."""
    from symptomfuse.data.curate import default_contract

    cur = tmp_path / "cur"
    cur.mkdir()
    default_contract().with_classes(["healthy", "parkinsons"], "parkinsons").save(cur)
    (cur / "curation.json").write_text("{}")
    (tmp_path / "m.csv").write_text("path,person_id,label\n")
    return cur


@pytest.mark.parametrize("argv,expect", WRONG, ids=[" ".join(a[:1] + a[3:] if a[0] != "curate" else a[:1] + a[2:])
                                                     for a, _ in WRONG])
def test_wrong_invocations_exit_2_with_a_message_before_loading_data(argv, expect, bare_curated, tmp_path,
                                                                     monkeypatch, capsys):
    import symptomfuse.data.curate as curate_mod
    import symptomfuse.data.dataset as dataset_mod

    def loaded(*a, **k):
        raise AssertionError("data was loaded before the arguments were checked")

    monkeypatch.setattr(dataset_mod, "load_curated", loaded)
    monkeypatch.setattr(curate_mod, "curate", loaded)
    args = [a.replace("{cur}", str(bare_curated)).replace("{tmp}", str(tmp_path))
            .replace("{manifest}", str(tmp_path / "m.csv")) for a in argv]
    try:
        code = main(args)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert expect in err and "Traceback" not in err


def test_a_path_the_machine_refuses_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch):
    """--out under a file (or on a read-only disk), and a full disk: exit 2 with the path and what to do."""
    import errno

    (tmp_path / "a_file").write_text("x")
    assert main(["synth", "--out", str(tmp_path / "a_file" / "cohort"), "--people", "2"]) == 2
    err = capsys.readouterr().err
    assert f"cannot use {tmp_path / 'a_file' / 'cohort'}" in err and "Not a directory" in err and "Traceback" not in err

    import symptomfuse.synth.cohort as cohort_mod

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(cohort_mod, "synthesize", full)
    assert main(["synth", "--out", str(tmp_path / "s"), "--people", "2"]) == 2
    assert "the disk is full (No space left on device): free some space" in capsys.readouterr().err

    def bug(*a, **k):
        raise OSError("an error about no path")  # a bug keeps its traceback

    monkeypatch.setattr(cohort_mod, "synthesize", bug)
    with pytest.raises(OSError, match="no path"):
        main(["synth", "--out", str(tmp_path / "s"), "--people", "2"])
