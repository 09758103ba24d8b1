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
                "--set", "agent.hidden=16000", "--out", str(tmp_path / "run"))
    assert r.returncode == 4 and "error[E0604]" in r.stderr and "GB" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
