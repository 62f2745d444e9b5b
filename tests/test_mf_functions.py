"""benchmarks/mf_functions.py: the published multi-fidelity problems are posed as published, and
a comparison job stays within its budget and scores regret at the target fidelity."""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import mf_functions  # noqa: E402
from benchmarks.mf_functions import PROBLEMS  # noqa: E402


def test_branin_at_target_fidelity_has_its_published_minimum_at_its_three_minimizers():
    branin = PROBLEMS["branin"]
    minimizers = [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)]
    unit = torch.tensor([[(x1 + 5.0) / 15.0, x2 / 15.0] for x1, x2 in minimizers])
    loss = branin.loss(unit.double(), torch.ones(3, dtype=torch.double))
    assert torch.allclose(loss, torch.full((3,), branin.best_loss, dtype=torch.double), atol=1e-5)
    # the low-fidelity minimizer is elsewhere: the optimum moves with fidelity
    assert float(branin.loss(unit[1:2].double(), torch.zeros(1, dtype=torch.double))) > 1.0


def test_hartmann_has_its_published_minimum_and_the_tutorials_cost():
    hartmann = PROBLEMS["hartmann"]
    x_star = torch.tensor([[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]])
    value = float(hartmann.loss(x_star.double(), torch.ones(1, dtype=torch.double)))
    assert value == pytest.approx(hartmann.best_loss, abs=1e-4)
    assert [hartmann.cost(s) for s in hartmann.levels] == [5.5, 5.75, 6.0]


def test_a_costbo_job_spends_within_its_budget_and_scores_regret_at_the_target(monkeypatch):
    small = dataclasses.replace(PROBLEMS["branin"], budget=2.9)  # the design spends 2.44
    monkeypatch.setitem(mf_functions.PROBLEMS, "branin", small)
    row = mf_functions.run_one("branin", "costbo_kg", seed=0)
    assert row["spent"] <= small.budget + 1e-9
    trajectory = json.loads(row["trajectory"])
    assert row["evaluations"] > small.n_initial  # it bought evaluations beyond the design
    assert all(regret >= -1e-6 for _, regret in trajectory)
    assert [spent for spent, _ in trajectory] == sorted(spent for spent, _ in trajectory)
    assert row["final_regret"] == trajectory[-1][1]
