"""`--help` of every command shows real defaults, never a placeholder: no "(default: )", "(default: None)",
no sentinel such as -1 or 0 standing for "the model's", and at most one default per flag."""
import re

import pytest

from genlab import catalog, cli

pytestmark = pytest.mark.unit

PLACEHOLDERS = ("(default: )", "(default: None)", "(default: -1", "(default: '')", "(default: ())")


def _help(capsys, monkeypatch, argv: list[str]) -> dict[str, str]:
    """{flag: its help, on one line} of `genlab ARGV --help`."""
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as e:
        cli.main([*argv, "--help"])
    assert e.value.code == 0
    entries, flag = {}, None
    for line in capsys.readouterr().out.splitlines():
        m = re.match(r"^  (-[-\w]+)", line)
        if m:
            flag = m.group(1)
            entries[flag] = line[m.end():]
        elif flag is not None and line.startswith("   "):
            entries[flag] += " " + line.strip()
        else:
            flag = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


def _problems(flags: dict[str, str]) -> list[str]:
    bad = []
    for flag, text in flags.items():
        # a sentinel (0, -1, "") standing for "the model's" shows as a second default after the help's own
        if any(p in text for p in PLACEHOLDERS) or text.count("(default") > 1:
            bad.append(f"{flag}: {text}")
    return bad


def _commands():
    for model in catalog.names("model"):
        yield ["train", model]
        yield ["eval", model]
        yield ["sample", model]
    for name in catalog.names("experiment"):
        yield ["experiment", "run", name]
    yield ["train"]


def test_no_help_of_any_command_shows_a_placeholder(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_run_model", lambda run_dir: run_dir)   # `eval MODEL`: that model's run flags
    bad, seen = [], 0
    for argv in _commands():
        flags = _help(capsys, monkeypatch, argv)
        seen += len(flags)
        bad += [f"genlab {' '.join(argv)} {p}" for p in _problems(flags)]
    assert seen > 200                       # the walk reached the config flags
    assert not bad, "\n".join(bad)


def test_the_check_catches_each_placeholder():
    for text in ("sampler (default: the model's) (default: )", "std (default: None)", "scale (default: -1.0)",
                 "sampling steps (default: the model's) (default: 0)"):
        assert _problems({"--x": text}), text
    assert not _problems({"--x": "warm-up steps (default: 0)", "--y": "sampler (default: the model's)",
                          "--z": "grid learning rate (the run's --lr is the basis's) (default: 0.02)"})


def test_eval_and_sample_default_to_the_same_device_as_train(capsys, monkeypatch):
    monkeypatch.setattr(cli, "_run_model", lambda run_dir: run_dir)
    devices = {cmd: _help(capsys, monkeypatch, [cmd, "vae"])["--device"] for cmd in ("train", "eval", "sample")}
    assert all("(default: auto" in d for d in devices.values()), devices


# ---------------------------------------------------------------- one family name: the folder's
def test_every_model_and_experiment_names_its_family_by_its_folder():
    from genlab.model import get_model_spec
    for name in catalog.names("model"):
        assert get_model_spec(name).family == catalog.family_of("model", name) in catalog.FAMILIES, name
    for name in catalog.names("experiment"):
        listed = catalog.family_of("experiment", name)
        assert catalog.get("experiment", name).family == (listed or "report"), name


def test_an_experiment_declared_under_another_family_is_refused():
    import dataclasses

    from genlab.experiments.registry import declare
    exp = catalog.get("experiment", "kl-check")
    with pytest.raises(ValueError, match="families/vae/ lists it"):
        declare(dataclasses.replace(exp, family="autoregressive"))
