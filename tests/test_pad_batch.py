"""The one right-padding helper (genlab.data.batches.pad_batch) against torch's pad_sequence."""
import pytest
import torch
from torch.nn.utils.rnn import pad_sequence

from genlab.data.batches import pad_batch

pytestmark = pytest.mark.unit


def test_pad_batch_matches_pad_sequence_for_tensors_and_lists():
    seqs = [[5, 6, 7], [1], [2, 3]]
    want = pad_sequence([torch.tensor(s) for s in seqs], batch_first=True, padding_value=9)
    assert torch.equal(pad_batch(seqs, 9), want)
    assert torch.equal(pad_batch([torch.tensor(s) for s in seqs], 9), want)
    assert pad_batch(seqs, 9).dtype == torch.long


def test_a_batch_of_empty_sequences_is_one_column_of_padding():
    assert torch.equal(pad_batch([[], []], 0), torch.zeros(2, 1, dtype=torch.long))
