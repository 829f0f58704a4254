"""Every experiment states a claim and checks it on its own results: each check, fed the experiment's
declared example summaries, finds its claim holding on the first and not on the second (so no verdict is
hard-coded), and the runner turns the check into the verdict written to summary.json."""
import json

import pytest

from genlab import catalog
from genlab.experiments.registry import (
    CANNOT_SHOW,
    NOT_SHOWN,
    SHOWN,
    Check,
    Experiment,
    list_experiments,
    run_experiment,
    verdict,
)

pytestmark = pytest.mark.unit

EXPERIMENTS = list_experiments()


@pytest.mark.parametrize("exp", EXPERIMENTS, ids=lambda e: e.name)
def test_every_experiment_states_a_claim_and_a_check_whose_verdict_flips(exp):
    assert len(exp.claim) > 40 and exp.check is not None, f"{exp.name} states no claim or no check"
    assert len(exp.examples) == 2, f"{exp.name} declares no (holding, broken) example summaries"
    holding, broken = (exp.check(e) for e in exp.examples)
    assert isinstance(holding, Check) and isinstance(broken, Check)
    assert holding.holds is True and broken.holds is False
    assert holding.measured != broken.measured and holding.expected    # the measured value is reported
    for quick in (False, True):
        assert verdict(exp, {**exp.examples[0], "quick": quick})["verdict"] == SHOWN
        word = verdict(exp, {**exp.examples[1], "quick": quick})["verdict"]
        assert word == (CANNOT_SHOW if quick and exp.quick_cannot else NOT_SHOWN)


@pytest.mark.parametrize("exp", [e for e in EXPERIMENTS if e.quick_cannot], ids=lambda e: e.name)
def test_a_quick_run_that_cannot_show_its_claim_says_why_and_which_command_shows_it(exp):
    assert "`genlab experiment run " in exp.quick_cannot and len(exp.quick_cannot) > 40


def test_the_runner_writes_the_claim_the_verdict_and_what_was_measured(monkeypatch, tmp_path):
    def declare(name, value):
        exp = Experiment(name, "test", "a claim checked on a number", analyze=lambda ctx: {"value": value},
                         claim="the value is below one", quick_cannot="reason; `genlab experiment run x`",
                         check=lambda s: Check(s["value"] < 1, f"value {s['value']}", "< 1"))
        monkeypatch.setitem(catalog.EXPERIMENTS, name, "genlab.experiments.report")
        monkeypatch.setitem(catalog._REGISTRY["experiment"], name, exp)
    declare("low", 0.5)
    declare("high", 2.0)
    assert run_experiment("low", tmp_path / "a")["verdict"] == SHOWN
    full = run_experiment("high", tmp_path / "b")
    quick = run_experiment("high", tmp_path / "c", quick=True)
    written = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert written["verdict"] == full["verdict"] == NOT_SHOWN
    assert written["claim"] == "the value is below one" and written["measured"] == "value 2.0"
    assert written["expected"] == "< 1"
    assert quick["verdict"] == CANNOT_SHOW and quick["quick_cannot"].startswith("reason")


def test_all_prints_each_verdict_and_fails_only_on_a_crash(monkeypatch, tmp_path, capsys):
    from genlab.experiments.report import run_all

    def claimed(ctx):
        return {"value": 2.0}
    exp = Experiment("missed", "test", "a claim that does not hold", analyze=claimed, claim="the value is below one",
                     check=lambda s: Check(s["value"] < 1, f"value {s['value']}", "< 1"))
    monkeypatch.setitem(catalog.EXPERIMENTS, "missed", "genlab.experiments.report")
    monkeypatch.setitem(catalog._REGISTRY["experiment"], "missed", exp)
    result = run_all(tmp_path / "all", quick=True, data_dir=None, only=["missed"])    # no exception: it ran
    assert result["verdicts"] == {NOT_SHOWN: 1}
    out = capsys.readouterr().out
    assert "missed: not shown" in out and "measured: value 2.0; expected: < 1" in out and "pass" not in out
