"""The ``hf`` rollout's seeded sampler without a model: Gumbel-max draws from the tempered, filtered distribution,
each row from its own generator (the model-level reproducibility test is in tests/e2e/test_hf_rollout.py)."""

from __future__ import annotations

import torch

from mapo_verl_cpu.backend.hf_rollout import GumbelSampler, keep_top_k_top_p, sample_seed

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0, 1.5, float("-inf")])


def _draws(temperature: float, top_k: int = -1, top_p: float = 1.0, rows: int = 20000) -> torch.Tensor:
    sampler = GumbelSampler(lambda s: s, temperature, top_k, top_p, [sample_seed(0, 0, 0, "k", i) for i in range(rows)])
    return torch.argmax(sampler(None, LOGITS.expand(rows, -1).clone()), dim=-1)


def _frequencies(draws: torch.Tensor) -> torch.Tensor:
    return torch.bincount(draws, minlength=len(LOGITS)).double() / len(draws)


def test_draws_follow_softmax_at_each_temperature():
    for temperature in (0.5, 1.0, 2.0):
        expected = torch.softmax(LOGITS.double() / temperature, dim=-1)
        freq = _frequencies(_draws(temperature))
        # 20000 draws: the standard error of each frequency is below 0.0036; 0.015 is over 4 of them
        assert torch.all((freq - expected).abs() < 0.015), (temperature, freq, expected)
        assert freq[-1] == 0, "a masked (-inf) token was drawn"


def test_top_k_and_top_p_renormalise_over_the_kept_tokens():
    kept = keep_top_k_top_p(LOGITS[None], top_k=3, top_p=1.0)[0]
    assert torch.isfinite(kept).tolist() == [True, True, False, False, False, False, True, False]
    expected = torch.softmax(kept.double(), dim=-1)
    freq = _frequencies(_draws(1.0, top_k=3))
    assert torch.all((freq - expected).abs() < 0.015) and set(torch.nonzero(freq).flatten().tolist()) == {0, 1, 6}
    probs = torch.softmax(LOGITS.double(), dim=-1)
    nucleus = keep_top_k_top_p(LOGITS[None], top_k=-1, top_p=0.6)[0]
    order = torch.argsort(probs, descending=True).tolist()
    # the smallest prefix of the sorted tokens whose probability reaches 0.6
    mass, want = 0.0, set()
    for token in order:
        want.add(token)
        mass += float(probs[token])
        if mass >= 0.6:
            break
    assert set(torch.nonzero(torch.isfinite(nucleus)).flatten().tolist()) == want


def test_each_row_depends_only_on_its_own_seed():
    seeds = [sample_seed(3, 0, 2, "key", i) for i in range(6)]
    scores = torch.randn(6, 50, generator=torch.Generator().manual_seed(0))
    together = torch.argmax(GumbelSampler(lambda s: s, 1.0, -1, 1.0, seeds)(None, scores.clone()), dim=-1)
    alone = [
        int(torch.argmax(GumbelSampler(lambda s: s, 1.0, -1, 1.0, [seed])(None, scores[i : i + 1].clone())))
        for i, seed in enumerate(seeds)
    ]
    assert together.tolist() == alone
    assert len({sample_seed(3, 0, 2, "key", i) for i in range(100)}) == 100
    assert sample_seed(3, 0, 2, "key", 0) != sample_seed(4, 0, 2, "key", 0) != sample_seed(3, 0, 3, "key", 0)
