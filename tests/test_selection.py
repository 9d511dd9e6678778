"""Candidate selection shared by the sampling-based actors."""

import pytest
import torch

from offrl_zoo.nets import select_candidates


def test_select_candidates_rules():
    candidates = torch.arange(12.0).reshape(6, 2)  # 2 states × 3 candidates, repeat_interleave order
    scores = torch.tensor([[0.0, 5.0, 1.0], [9.0, 0.0, 0.0]])
    torch.testing.assert_close(select_candidates(candidates, scores, "argmax"), torch.tensor([[2.0, 3.0], [6.0, 7.0]]))
    weights = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    expected = torch.tensor([[4.0, 5.0], [6.0, 7.0]])
    torch.testing.assert_close(select_candidates(candidates, weights, "weights"), expected)
    torch.manual_seed(0)
    picks = torch.stack(
        [select_candidates(candidates, torch.tensor([[0.0, 2.0, 0.0]] * 2), "softmax")[0, 0] for _ in range(4000)]
    )
    share = (picks == 2.0).float().mean().item()  # softmax([0, 2, 0])[1] = e²/(e² + 2)
    assert share == pytest.approx(7.389 / 9.389, abs=0.03)
    with pytest.raises(ValueError, match="rule='best'"):
        select_candidates(candidates, scores, "best")
