"""Generation: greedy equals an argmax loop over full forwards, sampling is reproducible and
honours top-p and stop tokens, left-padded batches equal their rows alone, streaming."""

from __future__ import annotations

import pytest
import torch

from text.config import create_config
from text.generate import _choose, generate
from text.model import Transformer


@pytest.fixture(scope="module")
def model() -> Transformer:
    torch.manual_seed(0)
    config = create_config("tiny", dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=512, max_seq_len=256)
    model = Transformer(config).eval()
    with torch.no_grad():  # sharper logits than the 0.02-std init: fewer near-ties in argmax
        model.output.weight.mul_(20)
    return model


def argmax_loop(model: Transformer, prompt: list[int], n: int) -> list[int]:
    tokens = list(prompt)
    with torch.no_grad():
        for _ in range(n):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    return tokens[len(prompt):]


def test_greedy_equals_an_argmax_loop_without_cache(model):
    prompt = [5, 17, 300, 42, 9]
    assert generate(model, [prompt], max_new_tokens=24) == [argmax_loop(model, prompt, 24)]


def test_left_padded_batch_equals_each_prompt_alone(model):
    prompts = [[1, 2, 3, 4, 5, 6, 7], [400], [9, 8, 7]]
    batch = generate(model, prompts, max_new_tokens=12)
    assert batch == [generate(model, [p], max_new_tokens=12)[0] for p in prompts]


def test_sampling_is_reproducible_with_a_seed(model):
    kwargs = dict(max_new_tokens=20, temperature=1.0, top_p=0.9)
    a = generate(model, [[1, 2, 3]], seed=123, **kwargs)
    assert a == generate(model, [[1, 2, 3]], seed=123, **kwargs)
    assert any(generate(model, [[1, 2, 3]], seed=s, **kwargs) != a for s in range(5))


def test_tiny_top_p_is_greedy(model):
    prompt = [[3, 1, 4, 1, 5]]
    sampled = generate(model, prompt, max_new_tokens=16, temperature=1.0, top_p=1e-6, seed=0)
    assert sampled == generate(model, prompt, max_new_tokens=16)


def test_top_p_samples_only_from_the_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(4000, 4)
    generator = torch.Generator().manual_seed(0)
    chosen = _choose(logits, 1.0, 0.75, generator)  # nucleus {0, 1}: 0.5 < 0.75 ≤ 0.8
    assert set(chosen.tolist()) == {0, 1}
    share = (chosen == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.03
    # Temperature sharpens: at T = 0.1 token 0 wins almost always.
    cold = _choose(logits, 0.1, 1.0, generator)
    assert (cold == 0).float().mean() > 0.99


def test_stop_tokens_end_a_row_and_are_included(model):
    free = generate(model, [[1, 2, 3]], max_new_tokens=30, temperature=1.0, seed=7)[0]
    stop = free[5]
    first = free.index(stop)
    stopped = generate(model, [[1, 2, 3]], max_new_tokens=30, temperature=1.0, seed=7, stop_tokens=[stop])[0]
    assert stopped == free[: first + 1]


def test_rows_stop_independently(model):
    prompts = [[1, 2, 3], [7, 7]]
    free = generate(model, prompts, max_new_tokens=16)
    stop = free[0][3]
    out = generate(model, prompts, max_new_tokens=16, stop_tokens=[stop])
    for row, tokens in enumerate(free):
        expect = tokens[: tokens.index(stop) + 1] if stop in tokens else tokens
        assert out[row] == expect


def test_streaming_callback_sees_every_token_in_order(model):
    seen: list[tuple[int, int]] = []
    out = generate(model, [[1, 2], [3]], max_new_tokens=6, on_token=lambda r, t: seen.append((r, t)))
    for row in (0, 1):
        assert [t for r, t in seen if r == row] == out[row]


def test_bad_requests_fail_clearly(model):
    with pytest.raises(ValueError, match="at least one token"):
        generate(model, [[]])
    with pytest.raises(ValueError, match="max_seq_len"):
        generate(model, [[1] * 200], max_new_tokens=100)
