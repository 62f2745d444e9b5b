"""The journal: a study resumes exactly from it, survives a crash mid-write, refuses corruption
and a second writer, and trials_dataframe shows one row per trial."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

from costbo import Study, TrialStatus
from costbo.journal import Journal, JournalError, JournalLocked, read_events

BUDGET = 2.0


def drive(study: Study, landscape) -> None:
    """A history with every kind of event: a cost seed, model-chosen runs, a failed run, a
    diverged run and a run left pending (asked, never told)."""
    study.seed_cost((1, 64, 1), step_seconds=0.45, overhead_seconds=45.0)
    for _ in range(4):  # three initial-design runs, then one the acquisition chooses
        landscape.tell(study, study.ask())
    failed = study.ask(lr=2e-3, steps=100, model=128)
    study.tell(failed.id, failed=True, seconds=30.0, error="CUDA error: out of memory")
    diverged = study.ask(lr=5e-2, steps=50, model=64)
    study.tell(diverged.id, diverged=True, seconds=12.0)
    study.ask()  # pending


def fixed_history(study: Study) -> None:
    """A short history without any model fit: one told run and one pending run."""
    first = study.ask(lr=1e-3, steps=50, model=64)
    study.tell(first.id, val_loss=7.6, seconds=64.0)
    study.ask(lr=3e-3, steps=50, model=64)


def journal_lines(path) -> list[bytes]:
    data = path.read_bytes()
    assert data.endswith(b"\n"), "a journal always ends with a complete line"
    return data.split(b"\n")[:-1]


# --- resume ------------------------------------------------------------------------------------
def test_loaded_study_has_the_same_trials_spend_and_next_proposal(tmp_path, cheap_space, landscape):
    path = tmp_path / "study.jsonl"
    never_stopped = Study(cheap_space, budget=BUDGET, journal=path, seed=3)
    drive(never_stopped, landscape)
    # The journal as a crash would leave it; the original carries on in memory.
    copy = tmp_path / "copy.jsonl"
    shutil.copy(path, copy)

    loaded = Study.load(copy)
    assert [t.to_dict() for t in loaded.trials] == [t.to_dict() for t in never_stopped.trials]
    assert [t.status for t in loaded.trials][-3:] == [
        TrialStatus.FAILED, TrialStatus.DIVERGED, TrialStatus.PENDING
    ]  # fmt: skip
    assert loaded.spent == never_stopped.spent
    assert loaded.pending_cost == never_stopped.pending_cost
    assert loaded.remaining == never_stopped.remaining
    for fidelity in cheap_space.fidelities:
        assert loaded.predict_cost(fidelity.steps, fidelity.model) == never_stopped.predict_cost(
            fidelity.steps, fidelity.model
        )

    resumed, continued = loaded.ask(), never_stopped.ask()
    assert (resumed.lr, resumed.steps, resumed.width) == (
        continued.lr, continued.steps, continued.width
    )  # fmt: skip
    assert resumed.predicted_cost_upper == continued.predicted_cost_upper
    loaded.close()
    never_stopped.close()


def test_resume_after_a_budget_change_keeps_the_new_budget(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    with Study(cheap_space, budget=3.5, journal=path, load_if_exists=True) as raised:
        assert raised.budget == 3.5
        assert len(raised.trials) == 2
    assert Study.load(path, read_only=True).budget == 3.5


def test_journal_folder_is_created_and_custom_events_survive_a_resume(tmp_path, cheap_space):
    path = tmp_path / "runs" / "nested" / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
        study.log_event({"event": "final", "lr": 1.2e-3, "val_loss": 3.51})
        with pytest.raises(ValueError, match="own 'event' name"):
            study.log_event({"event": "tell", "trial_id": 0})
    events, _ = read_events(path)
    assert events[-1]["event"] == "final"
    loaded = Study.load(path, read_only=True)
    assert [t.to_dict() for t in loaded.trials] == [t.to_dict() for t in study.trials]


def test_diverged_run_told_with_a_nan_loss_resumes_identically(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    study = Study(cheap_space, budget=BUDGET, journal=path)
    trial = study.ask(lr=5e-2, steps=50, model=64)
    study.tell(trial.id, val_loss=math.nan, diverged=True, seconds=12.0)
    study.close()
    loaded = Study.load(path, read_only=True)
    assert loaded.trials[0].to_dict() == study.trials[0].to_dict()


# --- crashes and corruption --------------------------------------------------------------------
def test_truncated_last_line_is_skipped_with_a_warning_and_the_next_tell_repairs_the_file(
    tmp_path, cheap_space
):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    # A crash halfway through writing the pending trial's tell.
    half_tell = json.dumps({"event": "tell", "trial_id": 1, "result": {"status": "complete"}})
    with open(path, "ab") as f:
        f.write(half_tell[: len(half_tell) // 2].encode())

    with pytest.warns(UserWarning, match="truncated last line"):
        resumed = Study.load(path)
    assert resumed.trials[1].status is TrialStatus.PENDING
    resumed.tell(1, val_loss=7.4, seconds=64.0)
    resumed.close()

    for line in journal_lines(path):
        json.loads(line)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Study.load(path, read_only=True)
    assert [t.status for t in again.trials] == [TrialStatus.COMPLETE, TrialStatus.COMPLETE]
    assert again.trials[1].val_loss == 7.4
    aside = list(tmp_path.glob("study.jsonl.partial-*"))
    assert len(aside) == 1
    assert aside[0].read_text() == half_tell[: len(half_tell) // 2]


def test_last_line_without_its_newline_stays_a_valid_journal_after_the_next_tell(
    tmp_path, cheap_space
):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    path.write_bytes(path.read_bytes()[:-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resumed = Study.load(path)
    resumed.tell(1, val_loss=7.4, seconds=64.0)
    resumed.close()
    again = Study.load(path, read_only=True)
    assert again.trials[1].val_loss == 7.4


def test_corrupt_middle_line_raises_a_journal_error_naming_the_line(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    lines = journal_lines(path)
    lines[1] = b'{"event": "ask", "trial": {"id": 0, "lr"'
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(JournalError, match="line 2 is corrupt") as err:
        Study.load(path)
    assert "not the last line" in str(err.value)
    with pytest.raises(JournalError, match="line 2 is corrupt"):
        Study.load(path, read_only=True)


def test_loading_a_missing_empty_or_foreign_file_gives_a_clear_error(tmp_path):
    with pytest.raises(JournalError, match="does not exist"):
        Study.load(tmp_path / "nope.jsonl")
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    with pytest.raises(JournalError, match="is empty"):
        Study.load(empty)
    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text('{"event": "ask", "trial": {}}\n')
    with pytest.raises(JournalError, match="does not start with a 'create' event"):
        Study.load(foreign)


def test_blank_lines_left_by_removing_a_corrupt_line_by_hand_are_skipped(tmp_path, cheap_space):
    # the corrupt-line error says "remove that line by hand"; an editor may leave it blank
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    lines = journal_lines(path)
    path.write_bytes(b"\n".join([*lines[:2], b"", *lines[2:]]) + b"\n\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resumed = Study.load(path)
    resumed.tell(1, val_loss=7.4, seconds=64.0)
    resumed.close()
    assert [t.val_loss for t in Study.load(path, read_only=True).trials] == [7.6, 7.4]


def test_malformed_event_is_a_journal_error_and_leaves_the_journal_unlocked(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    good = path.read_bytes()
    path.write_bytes(good + b'{"event": "tell", "trial_id": 5, "result": {}}\n')
    with pytest.raises(JournalError, match="this 'tell' event is malformed") as err:
        Study.load(path)
    assert '"trial_id": 5' in str(err.value)
    path.write_bytes(good)
    Study.load(path).close()  # not JournalLocked by the failed load


def test_journal_path_that_is_a_directory_is_named_as_one(tmp_path, cheap_space):
    with pytest.raises(JournalError, match="is a directory"):
        Study(cheap_space, budget=BUDGET, journal=tmp_path)


def test_custom_event_with_a_name_that_replay_acts_on_is_refused(tmp_path, cheap_space):
    # a 'budget' note without a budget would make the journal impossible to load
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        with pytest.raises(ValueError, match="needs its own 'event' name"):
            study.log_event({"event": "budget", "note": "approved"})
        study.log_event({"event": "note", "text": "approved"})
    assert Study.load(path, read_only=True).budget == BUDGET


def test_read_only_study_refuses_changes_it_could_not_journal(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    reader = Study.load(path, read_only=True)
    with pytest.raises(JournalError, match="closed or read-only"):
        reader.set_budget(5.0)
    with pytest.raises(JournalError, match="closed or read-only"):
        reader.log_event({"event": "final", "lr": 1e-3})
    assert reader.budget == BUDGET


def test_numpy_arrays_in_user_attrs_are_journaled_as_lists(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        trial = study.ask(lr=1e-3, steps=50, model=64)
        curve = np.array([7.9, 7.6, np.nan])
        study.tell(trial.id, val_loss=7.6, seconds=64.0, user_attrs={"val_curve": curve})
    assert Study.load(path, read_only=True).trials[0].user_attrs == {"val_curve": [7.9, 7.6, None]}


# --- one writer at a time ----------------------------------------------------------------------
def test_second_load_of_an_open_journal_is_refused_until_close(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    writer = Study(cheap_space, budget=BUDGET, journal=path)
    fixed_history(writer)
    with pytest.raises(JournalLocked, match="is open for writing") as err:
        Study.load(path)
    assert "read_only=True" in str(err.value)

    reader = Study.load(path, read_only=True)  # works while locked
    assert [t.to_dict() for t in reader.trials] == [t.to_dict() for t in writer.trials]
    with pytest.raises(JournalError, match="closed or read-only"):
        reader.tell(1, val_loss=7.4, seconds=64.0)
    with pytest.raises(JournalError, match="closed or read-only"):
        reader.ask(lr=1e-3, steps=50, model=64)

    writer.close()
    with pytest.raises(JournalError, match="closed or read-only"):
        writer.ask(lr=1e-3, steps=50, model=64)
    resumed = Study.load(path)
    resumed.tell(1, val_loss=7.4, seconds=64.0)
    resumed.close()


_HOLD_LOCK = """
import sys
from costbo.journal import Journal
journal = Journal(sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
"""

_TRY_LOCK = """
import sys
from costbo.journal import Journal, JournalLocked
try:
    Journal(sys.argv[1])
except JournalLocked as err:
    print(err)
    sys.exit(3)
"""


def test_another_process_cannot_open_a_journal_this_process_writes(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
        child = subprocess.run(
            [sys.executable, "-c", _TRY_LOCK, str(path)], capture_output=True, text=True, timeout=60
        )
        assert child.returncode == 3, child.stderr
        assert f"journal {path} is open for writing" in child.stdout
    child = subprocess.run(
        [sys.executable, "-c", _TRY_LOCK, str(path)], capture_output=True, text=True, timeout=60
    )
    assert child.returncode == 0, child.stdout + child.stderr


def test_journal_held_by_a_killed_process_can_be_resumed(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(JournalLocked):
            Study.load(path)
    finally:
        holder.kill()  # a crash: the kernel drops the lock with the process
        holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()
    resumed = Study.load(path)
    assert len(resumed.trials) == 2
    resumed.close()


def test_new_study_on_an_existing_journal_without_load_if_exists_is_refused(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path) as study:
        fixed_history(study)
    with pytest.raises(JournalError, match="already exists") as err:
        Study(cheap_space, budget=BUDGET, journal=path)
    assert f"Study.load({str(path)!r})" in str(err.value)
    assert "load_if_exists=True" in str(err.value)
    assert len(read_events(path)[0]) == 4  # create, ask, tell, ask: nothing was appended


def test_load_if_exists_resumes_a_matching_study_and_refuses_a_different_one(tmp_path, cheap_space):
    path = tmp_path / "study.jsonl"
    with Study(cheap_space, budget=BUDGET, journal=path, seed=0) as study:
        fixed_history(study)
    with Study(cheap_space, budget=BUDGET, journal=path, seed=0, load_if_exists=True) as same:
        assert len(same.trials) == 2
        assert same.spent == study.spent
    with pytest.raises(JournalError, match="different seed") as err:
        Study(cheap_space, budget=BUDGET, journal=path, seed=1, load_if_exists=True)
    assert "(0, now 1)" in str(err.value)
    Journal(path).close()  # the refused study released its lock


# --- trials_dataframe --------------------------------------------------------------------------
def test_trials_dataframe_has_one_row_per_trial_with_the_documented_columns(cheap_space):
    study = Study(cheap_space, budget=BUDGET)
    done = study.ask(lr=1e-3, steps=50, model=64)
    study.tell(done.id, val_loss=7.6, seconds=64.0)
    blown = study.ask(lr=5e-2, steps=100, model=128)
    study.tell(blown.id, diverged=True, seconds=20.0)
    study.ask(lr=2e-3, steps=200, model=256)

    df = study.trials_dataframe()
    expected = ["id", "lr", "steps", "width", "depth", "heads", "status", "val_loss", "diverged",
                "seconds", "cost", "predicted_cost", "asked_at", "told_at"]  # fmt: skip
    assert set(expected) <= set(df.columns)
    assert len(df) == 3
    assert df["id"].tolist() == [0, 1, 2]
    assert df["status"].tolist() == ["complete", "diverged", "pending"]
    assert df["diverged"].tolist() == [False, True, False]
    assert df["width"].tolist() == [64, 128, 256]
    assert df["depth"].tolist() == [1, 2, 4]
    assert df["lr"].tolist() == [1e-3, 5e-2, 2e-3]
    assert df["cost"].iloc[0] == pytest.approx(64.0 / 3600 * 1.5)
    assert df["cost"].iloc[:2].sum() == pytest.approx(study.spent)
    assert df["told_at"].isna().tolist() == [False, False, True]
    assert df["predicted_cost"].gt(0).all()


def test_trials_dataframe_of_an_empty_study_has_the_columns_and_no_rows(cheap_space):
    df = Study(cheap_space, budget=BUDGET).trials_dataframe()
    assert len(df) == 0
    assert {"id", "lr", "status", "cost"} <= set(df.columns)
