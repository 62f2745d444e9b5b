"""The benchmark harness: ``benchmarks/run.py --quick`` runs every method end to end, and the
oracle and scoring rules it relies on hold."""

from __future__ import annotations

import csv
import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.run import dollars_to_goal  # noqa: E402
from benchmarks.strategies import default_methods  # noqa: E402
from benchmarks.strategies.hyperband import bracket_table  # noqa: E402
from benchmarks.strategies.oracle import TARGET_MODEL, Oracle, OverBudget  # noqa: E402
from costbo.sim import sample_landscape  # noqa: E402


def test_quick_benchmark_runs_every_method_within_budget(tmp_path):
    methods = default_methods()
    if importlib.util.find_spec("optuna") is None:  # optional peer (the bench extra)
        methods.remove("optuna_tpe_hyperband")
    out = tmp_path / "quick.csv"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
         "--methods", *methods],
        capture_output=True, text=True, timeout=170, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert {(r["method"], float(r["budget"])) for r in rows} == {
        (m, b) for m in methods for b in (2.0, 5.0)
    }
    for row in rows:
        assert row["error"] == "", row
        assert float(row["spent"]) <= float(row["budget"]) + 1e-9, row
        assert math.isfinite(float(row["regret"])) and float(row["regret"]) >= 0.0
    summary = (tmp_path / "quick_summary.md").read_text()
    for method in methods:
        assert f"| {method} | 1 |" in summary
    assert (tmp_path / "quick_regret_vs_dollars.png").stat().st_size > 10_000


def test_oracle_refuses_a_run_past_the_budget_without_charging():
    landscape = sample_landscape("calibrated", 0)
    full_run = landscape.run_dollars(4725, TARGET_MODEL)
    oracle = Oracle(landscape, budget=full_run * 0.99)
    with pytest.raises(OverBudget, match="remains"):
        oracle.run(1e-3, 4725, TARGET_MODEL)
    assert oracle.spent == 0.0 and oracle.runs == [] and oracle.refused == 1


def test_oracle_charges_a_diverged_run_only_until_it_is_killed():
    landscape = sample_landscape("calibrated", 0)
    oracle = Oracle(landscape, budget=40.0)
    result = oracle.run(0.1, 1000, TARGET_MODEL)
    assert result.diverged and math.isnan(result.val_loss)
    assert 0 < result.seconds < landscape.run_seconds(1000, TARGET_MODEL) / 2
    assert oracle.spent == pytest.approx(result.dollars)


def test_dollars_to_goal_counts_only_an_answer_that_stays_below_the_goal():
    # (dollars spent, lr, regret): good at $1, bad again at $2, good for good from $3
    trajectory = [(0.5, 1e-3, 0.05), (1.0, 1e-3, 0.005), (2.0, 1e-3, 0.02), (3.0, 1e-3, 0.009)]
    assert dollars_to_goal(trajectory) == 3.0
    assert dollars_to_goal(trajectory[:3]) == math.inf
    assert dollars_to_goal([(0.0, 6e-4, 0.001)]) == 0.0


def test_hyperband_bracket_table_is_the_papers_for_r_81_eta_3():
    # Li et al. (2018), Table 1: R = 81, eta = 3, one unit of resource at the bottom
    table = bracket_table(81, eta=3, min_steps=1)
    assert table == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]


def test_paired_comparison_keeps_only_the_landscapes_every_method_finished():
    import pandas as pd

    from benchmarks.paired import paired, summary

    def rows(method, jobs, regret, error=""):
        return pd.DataFrame(
            [
                {"method": method, "family": f, "seed": s, "budget": b, "quick": 0,
                 "regret": regret, "diverged": 0, "error": error}
                for f, s, b in jobs
            ]
        )  # fmt: skip

    both = [("calibrated", 0, 5.0), ("calibrated", 1, 5.0)]
    frames = [
        rows("a", [*both, ("no_drift", 0, 5.0)], 0.001),
        rows("b", both, 0.002),
        rows("b", [("no_drift", 0, 5.0)], float("nan"), error="ValueError: boom"),
    ]
    kept = paired(frames, None)
    assert set(zip(kept["family"], kept["seed"], strict=True)) == {
        ("calibrated", 0),
        ("calibrated", 1),
    }
    text = summary(kept)
    assert "| a | 2 | 0.0010 |" in text and "| b | 2 | 0.0020 |" in text


def test_paired_pools_the_misspecified_families_and_keeps_a_seed_range():
    import pandas as pd

    from benchmarks.paired import paired, summary

    # a is better on the calibrated family, b on the misspecified ones (pooled: their median)
    regrets = {
        ("a", "calibrated"): 0.001, ("b", "calibrated"): 0.002,
        ("a", "no_drift"): 0.005, ("b", "no_drift"): 0.003,
        ("a", "narrow_basin"): 0.007, ("b", "narrow_basin"): 0.001,
    }  # fmt: skip
    frame = pd.DataFrame(
        [
            {"method": m, "family": f, "seed": s, "budget": 5.0, "quick": 0,
             "regret": v + 1e-6 * s, "diverged": 0, "error": ""}
            for (m, f), v in regrets.items()
            for s in range(4)
        ]
    )  # fmt: skip
    text = summary(paired([frame], None))
    pooled = text.split("### Median, calibrated and misspecified families")[1]
    assert "| a | **0.0010** | 0.0060 |" in pooled  # misspecified: median of 0.005 and 0.007
    assert "| b | 0.0020 | **0.0020** |" in pooled  # median of 0.003 and 0.001
    kept = paired([frame], None, seeds=(1, 2))
    assert sorted(kept["seed"].unique()) == [1, 2]
    assert len(kept) == 2 * 3 * 2  # methods x families x seeds
    kept = paired([frame], None, families=["calibrated"])
    assert set(kept["family"]) == {"calibrated"} and len(kept) == 2 * 4


def test_paired_counts_the_landscapes_where_a_method_is_worse():
    import pandas as pd

    from benchmarks.paired import median_difference

    # issue 3's "$5: never worse than the 6e-4 default" is this count against the default
    a = [0.001, 0.004, 0.002, 0.0005, 0.003]
    b = [0.002, 0.003, 0.002, 0.0010, 0.001]
    frame = pd.DataFrame(
        [{"method": m, "family": "calibrated", "seed": s, "budget": 5.0, "regret": v}
         for m, values in (("a", a), ("b", b)) for s, v in enumerate(values)]
    )  # fmt: skip
    d = median_difference(frame, "a", "b", 5.0)
    assert d["higher"] == 2 and d["lower_share"] == pytest.approx(2 / 5)


def test_paired_rejects_a_reversed_seed_range(capsys):
    from benchmarks.paired import main

    with pytest.raises(SystemExit):
        main(["results/runs.csv", "--seeds", "59", "30"])
    assert "--seeds 59 30: FIRST must be <= LAST" in capsys.readouterr().err
    # a range the CSVs do not have names the filter, not just "no job"
    with pytest.raises(SystemExit, match="within --seeds 100 110"):
        main(["results/runs.csv", "--seeds", "100", "110"])


def test_qmfkg_peer_is_reproducible_whatever_ran_before_in_the_worker():
    # BoTorch seeds the KG's fantasy sampler from torch's global generator when the acquisition
    # is built; a benchmark worker's earlier jobs must not change a job's runs or answer
    import torch

    from benchmarks.strategies.qmfkg import qmfkg_quick

    def job(history_seed):
        torch.manual_seed(history_seed)
        torch.rand(history_seed)  # what an earlier job in the same worker might have drawn
        oracle = Oracle(sample_landscape("calibrated", 3), budget=2.0)
        answer = qmfkg_quick(oracle, seed=3)
        return answer, [(r.lr, r.steps, r.model.width) for r in oracle.runs]

    assert job(1) == job(977)


def test_paired_bootstrap_measures_a_shift_exactly_and_luck_as_an_interval_around_zero():
    import numpy as np
    import pandas as pd

    from benchmarks.paired import against, median_difference

    regrets = np.random.default_rng(5).lognormal(-7.0, 1.0, 60)
    jobs = [("calibrated", s, 5.0) for s in range(60)]

    def frame(method, values):
        return pd.DataFrame(
            [{"method": method, "family": f, "seed": s, "budget": b, "regret": v}
             for (f, s, b), v in zip(jobs, values, strict=True)]
        )  # fmt: skip

    # the same landscapes, one method better by 1e-4 nats on each: exactly that, no doubt
    shifted = pd.concat([frame("a", regrets - 1e-4), frame("b", regrets)])
    d = median_difference(shifted, "a", "b", 5.0)
    assert d["difference"] == pytest.approx(-1e-4)
    assert d["low"] == pytest.approx(-1e-4) and d["high"] == pytest.approx(-1e-4)
    assert d["lower_share"] == 1.0 and d["landscapes"] == 60
    # two methods that are the same up to luck: the interval straddles zero
    luck = np.random.default_rng(6).permutation(regrets)
    d = median_difference(pd.concat([frame("a", regrets), frame("c", luck)]), "a", "c", 5.0)
    assert d["low"] < 0.0 < d["high"]
    assert "| $5 | b | 60 | -0.0001 | -0.0001 .. -0.0001 | 100% |" in against(shifted, "a")
    with pytest.raises(SystemExit, match="--against 'zz'"):
        against(shifted, "zz")


def test_paired_bootstrap_resamples_seeds_whose_families_share_their_luck():
    import numpy as np
    import pandas as pd

    from benchmarks.paired import median_difference

    # 12 seeds x 6 families; a seed's luck moves method a by the same amount on all its
    # families (as a seed's shared draws do in costbo.sim): 12 independent outcomes, not 72
    rng = np.random.default_rng(8)
    families = [f"f{i}" for i in range(6)]
    luck = np.abs(rng.normal(0.0, 3e-3, 12))  # regrets stay >= 0
    rows = []
    for seed in range(12):
        for family in families:
            b = float(rng.lognormal(-6.0, 0.3))
            rows += [
                {"method": "a", "family": family, "seed": seed, "budget": 5.0,
                 "regret": b + luck[seed] + float(rng.normal(0.0, 1e-5))},
                {"method": "b", "family": family, "seed": seed, "budget": 5.0, "regret": b},
            ]  # fmt: skip
    table = pd.DataFrame(rows)
    d = median_difference(table, "a", "b", 5.0)
    assert d["landscapes"] == 72
    # the interval an independent-landscape bootstrap would give, for comparison
    wide = table.pivot_table(index=["seed", "family"], columns="method", values="regret")
    a, b = wide["a"].to_numpy(), wide["b"].to_numpy()
    idx = np.random.default_rng(0).integers(0, len(a), size=(4000, len(a)))
    naive = np.median(a[idx], axis=1) - np.median(b[idx], axis=1)
    naive_width = np.quantile(naive, 0.95) - np.quantile(naive, 0.05)
    assert d["high"] - d["low"] > 1.5 * naive_width


def test_expected_loss_answer_hedges_below_an_asymmetric_basin_only():
    import numpy as np

    from benchmarks.answer_bias import hedge
    from costbo.space import Fidelity

    class Symmetric:  # a bowl as steep above its optimum as below: nothing to hedge against
        target = Fidelity(4725, TARGET_MODEL)

        def best_lr(self, steps, model):
            return 1e-3

        def val_losses(self, lrs, steps, model):
            return 3.3 + 0.05 * (np.log10(lrs) + 3.0) ** 2

    assert abs(hedge(Symmetric(), 0.15)) < 0.005
    landscape = sample_landscape("calibrated", 4)  # steep above the optimum, gentle below
    offsets = [hedge(landscape, sd) for sd in (0.05, 0.1, 0.2)]
    assert offsets[0] <= 0.0 and offsets[2] < offsets[1] < offsets[0]


def test_drift_model_fed_many_true_smooth_optima_finds_the_target_and_fewer_rungs_miss_more():
    from benchmarks.answer_bias import rung_extrapolation
    from costbo.sim import sample_landscape

    table = rung_extrapolation([sample_landscape("calibrated", s) for s in range(8)])
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert list(rows) == ["all 48", "<= 1000 steps", "<= 200 steps"]

    def smooth_mean(name):
        return float(rows[name].split(" | ")[2].split(",")[0])

    # all rungs' smooth optima pin the target's within 0.02 decades; short rungs alone, less
    assert abs(smooth_mean("all 48")) < 0.02
    assert abs(smooth_mean("<= 200 steps")) > abs(smooth_mean("all 48"))


def test_rung_reading_separates_misread_rungs_from_the_extrapolation():
    import math

    from benchmarks.answer_bias import rung_reading
    from benchmarks.strategies.costbo_study import tune
    from benchmarks.strategies.oracle import Oracle
    from costbo.sim import sample_landscape

    landscape = sample_landscape("calibrated", 3)
    study = tune(Oracle(landscape, 1.0), seed=3)
    post = study._fit()["posterior"]
    assert len(post.rungs) >= 2
    target = landscape.target
    best = math.log10(landscape.best_lr(target.steps, target.model))

    def own(steps, model):  # "true" optima equal to the Study's own estimates
        return next(10.0**r.log10_lr for r in post.rungs if r.key == (steps, model))

    # fed back its own readings, the refit is the Study's drift and nothing is misread
    same = rung_reading(post.rungs, post.drift.prior, landscape, own)
    assert same["misread"] == pytest.approx(0.0, abs=1e-12)
    assert same["true_rungs"] == pytest.approx(float(post.drift.optimum(0.0, 0.0)) - best)
    # the landscape's true optima: a finite miss, and the sd-weighted misreading
    truth = rung_reading(post.rungs, post.drift.prior, landscape)
    assert math.isfinite(truth["true_rungs"]) and abs(truth["misread"]) < 0.5


def test_paired_names_a_missing_csv(tmp_path, capsys):
    from benchmarks.paired import main

    with pytest.raises(SystemExit):
        main([str(tmp_path / "nope.csv")])
    assert "nope.csv: no such CSV" in capsys.readouterr().err


def test_answer_bias_rejects_no_landscapes_and_non_positive_slope_sds(capsys):
    from benchmarks.answer_bias import main

    with pytest.raises(SystemExit):
        main(["--rungs", "--seeds", "0"])
    assert "--seeds 0: give at least 1 landscape" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--rungs", "--seeds", "2", "--prior-slope-sds", "-1", "0.02"])
    assert "both sds must be > 0" in capsys.readouterr().err


def test_answer_offsets_separate_a_constant_offset_from_shrinkage_to_the_prior(tmp_path):
    import numpy as np
    import pandas as pd

    from benchmarks.answer_bias import sweep_offsets

    best = 1.45e-3 * 10.0 ** np.linspace(-0.4, 0.4, 41)
    rows = pd.DataFrame(
        {"quick": 0, "budget": 5.0, "best_lr": best,
         # answers pulled halfway to the prior's centre, then 0.05 decades low
         "lr": 1.45e-3 * (best / 1.45e-3) ** 0.5 * 10.0**-0.05}
    )  # fmt: skip
    path = tmp_path / "rows.csv"
    rows.to_csv(path, index=False)
    table = sweep_offsets(path)
    assert "| $5 | -0.50 | -0.050 |" in table


def test_wide_drift_candidate_is_the_studys_prior_with_only_the_slope_sds_widened():
    # The candidate's sweep rows stand for "the default Study with these sds": nothing else in
    # its prior may differ from what Study builds for design.md's space.
    from benchmarks.strategies.costbo_study import WIDE_DRIFT_SDS, default_space, wide_drift_prior
    from costbo.study import Study

    default = Study(default_space(), budget=5.0, price_per_hour=1.5).prior.to_dict()
    candidate = wide_drift_prior().to_dict()
    changed = {k for k in default if default[k] != candidate[k]}
    assert changed == set(WIDE_DRIFT_SDS)
    assert all(candidate[k] > default[k] for k in changed)
