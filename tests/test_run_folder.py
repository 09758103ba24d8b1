"""Run folders lose nothing and run nothing the user did not write: `--out` refuses a
folder in use, `--resume` proves the folder and checkpoint are this spec's before writing,
checkpoints carry a checksum, one writer at a time."""

from __future__ import annotations


import pytest
import torch

from metadsl.runtime.runs import run_folder, session as runs

from .conftest import ROOT, metadsl

SPEC = str(ROOT / "specs" / "rl2_bandits.mrl")
SMALL = ["--iterations", "2", "--set", "agent.hidden=8", "--set", "meta.meta_batch=8",
         "--set", "evaluate.instances=10"]




def snapshot(folder) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != "lock"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished small run, copied afresh by each test that changes it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    r = metadsl("run", SPEC, *SMALL, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def copy_of(trained, tmp_path):
    import shutil

    shutil.copytree(trained, tmp_path / "run")
    return tmp_path / "run"


def test_out_refuses_a_folder_that_holds_a_run_or_other_files(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    before = snapshot(run)
    r = metadsl("run", SPEC, *SMALL, "--out", str(run))
    assert r.returncode == 2 and "error[E0601]" in r.stderr and "--resume" in r.stderr
    assert snapshot(run) == before
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep me")
    r = metadsl("run", SPEC, *SMALL, "--out", str(notes))
    assert r.returncode == 2 and "is not empty" in r.stderr
    r = metadsl("run", SPEC, *SMALL, "--out", str(notes), "--force")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (notes / "mine.txt").read_text() == "keep me" and (notes / "eval.json").is_file()


@pytest.mark.parametrize("out, code, status", [("", "E0601", 2), ("{file}", "E0601", 2),
                                               ("{file}/sub", "E0603", 4)])
def test_out_at_a_file_or_nowhere_is_a_located_error(out, code, status, tmp_path):
    (tmp_path / "file").write_text("x")
    r = metadsl("run", SPEC, *SMALL, "--out", out.format(file=tmp_path / "file"), cwd=tmp_path)
    assert r.returncode == status and f"error[{code}]" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == [tmp_path / "file"]


def test_resume_refuses_another_spec_s_run_before_writing(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    before = snapshot(run)
    r = metadsl("run", str(ROOT / "tests/specs/two_phases.mrl"), "--resume", str(run))
    assert r.returncode == 2 and "holds a run of spec 'rl2_bandits'" in r.stderr, r.stderr
    assert snapshot(run) == before


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty"])
def test_a_damaged_checkpoint_is_refused_and_nothing_changes(damage, trained, tmp_path):
    run = copy_of(trained, tmp_path)
    path = run / "checkpoint.pt"
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data[:1000] if damage == "truncate" else
                           b"" if damage == "empty" else data))
    before = snapshot(run)
    r = metadsl("run", SPEC, "--iterations", "3", "--resume", str(run))
    assert r.returncode == 4 and "error[E0602]" in r.stderr, r.stderr
    assert snapshot(run) == before


def test_a_checkpoint_proves_it_is_whole_and_this_spec_s(tmp_path):
    payload = {"state": {"w": torch.arange(4.0)}, "completed": {"meta": 3}}
    run_folder.save(tmp_path, "spec", "abc", payload)
    loaded = run_folder.load(tmp_path, "spec", "abc")
    assert torch.equal(loaded["state"]["w"], payload["state"]["w"])
    with pytest.raises(SystemExit) as e:
        run_folder.load(tmp_path, "other", "abc")
    assert e.value.code == 4


def test_a_second_writer_is_refused(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    held = run_folder.Lock(run)
    try:
        r = metadsl("run", SPEC, "--iterations", "3", "--resume", str(run))
        assert r.returncode == 2 and "in use by another run" in r.stderr, r.stderr
    finally:
        held.release()


def test_a_resume_without_checkpoint_starts_over_without_duplicate_rows(trained, tmp_path):
    run = copy_of(trained, tmp_path)
    (run / "checkpoint.pt").unlink()
    r = metadsl("run", SPEC, "--iterations", "2", "--resume", str(run))
    assert r.returncode == 0 and "has no checkpoint" in r.stderr, r.stderr
    rows = [line.split(",")[:2] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert rows == [["meta", "0"], ["meta", "1"]]


def test_a_resumed_optimizer_takes_this_run_s_hyperparameters():
    """`--set` of a learning rate on `--resume` takes effect (args.json records it)."""
    model = torch.nn.Linear(2, 1)

    class State(runs.State):
        def __init__(self, lr):
            self.opt = torch.optim.Adam(model.parameters(), lr=lr)

    first = State(1e-3)
    model(torch.ones(1, 2)).sum().backward()
    first.opt.step()
    resumed = State(5e-2)
    resumed.load_state_dict(first.state_dict())
    assert resumed.opt.param_groups[0]["lr"] == 5e-2
    assert resumed.opt.state_dict()["state"][0]["step"] == 1  # the moments continue


@pytest.mark.parametrize("value", ["nan", "inf", "1e300", "-1e40"])
def test_non_finite_or_float32_overflowing_settings_are_refused(value, tmp_path):
    r = metadsl("run", SPEC, *SMALL, "--set", f"meta.agent.lr={value}", "--out",
                str(tmp_path / "run"))
    assert r.returncode == 2 and "error[E0207]" in r.stderr, r.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_that_asks_for_more_memory_than_the_machine_has_says_so(tmp_path):
    r = metadsl("run", SPEC, "--iterations", "1", "--set", "meta.meta_batch=10000000",
                "--set", "agent.hidden=4000", "--out", str(tmp_path / "run"))
    assert r.returncode == 4 and "error[E0604]" in r.stderr and "GB" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


NEC = str(ROOT / "specs" / "nec.mrl")
NEC_SMALL = ["--iterations", "2", "--set", "M.capacity=50", "--set", "evaluate.instances=2",
             "--threads", "1"]


@pytest.fixture(scope="module")
def nec_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nec") / "run"
    r = metadsl("run", NEC, *NEC_SMALL, "--out", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_a_resume_that_resizes_a_memory_is_refused_before_writing(nec_run, tmp_path):
    """A larger capacity once loaded Adam's moments into tensors of another shape: a
    segfault at the next step, after args.json had been rewritten."""
    run = copy_of(nec_run, tmp_path)
    before = snapshot(run)
    r = metadsl("run", NEC, "--iterations", "3", "--set", "M.capacity=80", "--resume", str(run))
    assert r.returncode == 4 and "error[E0602]" in r.stderr, r.stderr
    assert "[2, 50, 64] in the checkpoint, [2, 80, 64] in this run" in r.stderr
    assert "M.capacity 50 → 80" in r.stderr
    assert snapshot(run) == before


def test_a_checkpoint_without_a_part_of_the_state_is_refused(nec_run, tmp_path):
    """A whole, this-spec checkpoint lacking the episodic memory would resume it empty."""
    run = copy_of(nec_run, tmp_path)
    versions = run_folder.versions(run)
    payload = run_folder.load(run, versions["spec"], versions["spec_sha256"])
    del payload["state"]["M"]
    run_folder.save(run, versions["spec"], versions["spec_sha256"], payload)
    before = snapshot(run)
    r = metadsl("run", NEC, "--iterations", "3", "--resume", str(run))
    assert r.returncode == 4 and "error[E0602]" in r.stderr and "has no M" in r.stderr, r.stderr
    assert snapshot(run) == before


def test_a_linked_lock_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "run"
    run.mkdir()
    (run / "lock").symlink_to(target)
    r = metadsl("run", SPEC, *SMALL, "--out", str(run))
    assert r.returncode == 2 and "error[E0601]" in r.stderr, r.stderr
    r = metadsl("run", SPEC, *SMALL, "--out", str(run), "--force")
    assert r.returncode == 2 and "symbolic link" in r.stderr, r.stderr
    assert target.read_text() == "keep me"


@pytest.mark.parametrize("damage", ["directory", "garbage", "no iteration column"])
def test_a_damaged_metrics_file_is_a_located_error(damage, trained, tmp_path):
    run = copy_of(trained, tmp_path)
    path = run / "metrics.csv"
    if damage == "directory":
        path.unlink()
        path.mkdir()
    elif damage == "garbage":
        path.write_bytes(b"\xff\xfe\x00garbage\n\x00\x01")
    else:
        path.write_text("loop,step\nmeta,0\n")
    r = metadsl("run", SPEC, "--iterations", "3", "--resume", str(run))
    assert r.returncode == 4 and "error[E0602]" in r.stderr and "metrics.csv" in r.stderr, \
        r.stderr
    assert "Traceback" not in r.stderr


def test_a_full_disk_is_its_own_error_and_says_where_the_checkpoint_is(trained, tmp_path,
                                                                         capsys):
    import errno
    import types

    folder = copy_of(trained, tmp_path)
    run = runs.Run.__new__(runs.Run)  # the end of a run, without training one
    run.folder, run.loop, run.iteration, run.completed = folder, "meta", 7, {"meta": 2}
    run._file = run._tensorboard = None
    run._lock, run._handlers = types.SimpleNamespace(release=lambda: None), {}
    with pytest.raises(SystemExit) as stop:
        run.__exit__(OSError, OSError(errno.ENOSPC, "No space left on device",
                                      str(folder / "metrics.csv")), None)
    err = capsys.readouterr().err
    assert stop.value.code == 4 and "error[E0605]" in err and "iteration 7 of meta" in err
    assert str(folder / "checkpoint.pt") in err and "--resume" in err


def test_a_run_refuses_sizes_beyond_the_machine_s_memory_before_training(monkeypatch):
    """NEC at 10⁷ keys per action grew to 24 GB and was killed by the kernel."""
    class State(runs.State):
        def __init__(self):
            self.M = torch.nn.Linear(1000, 1000)
            self.opt = torch.optim.Adam(self.M.parameters())

    run = runs.Run.__new__(runs.Run)
    monkeypatch.setattr(runs, "_available_bytes", lambda: 10_000_000)  # 10 MB
    with pytest.raises(SystemExit) as stop:
        run.restore(State())  # 4 MB of weights, stepped by Adam: at least 24 MB
    assert stop.value.code == 4
    assert runs._needed_bytes(State()) >= 6 * 1001 * 1000 * 4


def test_a_signal_ends_a_run_saying_where_its_checkpoint_is(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "metadsl.cli", "run", SPEC,
                                "--iterations", "100000", "--set", "agent.hidden=8",
                                "--set", "meta.meta_batch=8", "--out", str(out)],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").is_file() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM at iteration" in err and "--resume" in err
    assert str(out / "checkpoint.pt") in err and "Traceback" not in err


def test_a_setting_given_twice_is_refused(tmp_path):
    r = metadsl("run", SPEC, *SMALL, "--set", "agent.hidden=16", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "agent.hidden is set twice" in r.stderr, r.stderr
    r = metadsl("run", SPEC, *SMALL, "--set", "meta.iterations=3", "--out", str(tmp_path / "r"))
    assert r.returncode == 2 and "meta.iterations is set twice" in r.stderr, r.stderr


def test_compile_never_writes_over_a_spec(tmp_path):
    spec = tmp_path / "mine.mrl"
    spec.write_text((ROOT / "specs" / "rl2_bandits.mrl").read_text())
    before = spec.read_text()
    for out in (spec, tmp_path / "other.mrl"):
        r = metadsl("compile", str(spec), "-o", str(out))
        assert r.returncode == 1 and "would overwrite a spec" in r.stderr, r.stderr
    (tmp_path / "link.py").symlink_to(spec)
    r = metadsl("compile", str(spec), "-o", str(tmp_path / "link.py"))
    assert r.returncode == 1 and spec.read_text() == before
