"""Hostile inputs of issue 25 (scene files, datasets that do not fit a model, unbounded requests, a
damaged metrics log, built-in text): each gives one line and exit 2, or just works."""
from __future__ import annotations

import pytest

from genlab.cli import main

pytestmark = pytest.mark.unit


def one_line_error(capsys, argv, *needles) -> str:
    """Run the CLI in-process; assert exit 2, exactly one stderr line, no traceback, and the needles in it."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ------------------------------------------------------------------ built-in text: every split encodes
@pytest.mark.parametrize("words", [100, 300, 1000])
def test_small_synthetic_text_encodes_every_split(words):
    from genlab.data.registry import load_dataset
    for split in ("train", "val", "test"):
        data = load_dataset("synthetic-text", split, words=words)
        assert data.tokenizer.decode(data.tokens.tolist()) == data.tokenizer.decode(
            data.tokenizer.encode(data.tokenizer.decode(data.tokens.tolist())))
    train = load_dataset("synthetic-text", "train", words=words)
    val = load_dataset("synthetic-text", "val", words=words)
    assert train.tokenizer.chars == val.tokenizer.chars
    assert set(val.tokenizer.decode(val.tokens.tolist())) <= set(train.tokenizer.chars)
