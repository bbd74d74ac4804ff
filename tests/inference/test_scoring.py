"""The scoring core shared by `llada eval` and the lm-eval adapter: pair encoding, greedy checks, rolling windows."""

from __future__ import annotations

import types

import pytest
import torch

from llada_lightning.inference.decoders import DiffusionDecoder
from llada_lightning.inference.scoring import encode_pair, fit_context, is_greedy, rolling_loglik, rolling_windows
from llada_lightning.likelihood import ar_log_likelihood
from llada_lightning.sampling import generate, generate_ar


def test_encode_pair_moves_trailing_space_and_handles_empty_context(arm_run):
    prompt, answer = encode_pair(arm_run, "Good morrow ", "sir")
    assert prompt == arm_run.encode("Good morrow")
    assert arm_run.decode(answer) == " sir"
    prompt, answer = encode_pair(arm_run, "", "sir")
    assert prompt == [arm_run.eos_id] and answer == arm_run.encode("sir")
    with pytest.raises(ValueError, match="encodes to no tokens"):
        encode_pair(arm_run, "a", "")


def test_fit_context_keeps_the_answer_and_the_latest_context():
    assert fit_context([1, 2, 3, 4], [5, 6], 4) == [3, 4]
    assert fit_context([1, 2, 3, 4], [5, 6], None) == [1, 2, 3, 4]
    assert fit_context([1, 2, 3, 4], [5, 6, 7, 8, 9], 4) == [4]


@pytest.mark.parametrize(("n", "max_length"), [(0, 4), (3, 4), (4, 4), (10, 4), (17, 8), (5, 2)])
def test_rolling_windows_score_each_token_once_with_the_tokens_before_it(n, max_length):
    tokens = list(range(100, 100 + n))
    windows = rolling_windows(tokens, prefix_id=0, max_length=max_length)
    assert [t for _, piece in windows for t in piece] == tokens
    full = [0, *tokens]
    start = 0
    for context, piece in windows:
        assert 1 <= len(piece) <= max_length - 1 and len(context) + len(piece) <= max_length
        assert context == full[start + 1 - len(context) : start + 1]  # the tokens right before the piece
        if start + len(piece) == n and n >= max_length:
            assert len(context) + len(piece) == max_length  # the last window gets the full context
        start += len(piece)
    with pytest.raises(ValueError, match="max_length"):
        rolling_windows(tokens, 0, 1)


def test_arm_rolling_loglik_is_the_exact_sum_over_windows(arm_run):
    text = "Now is the winter of our discontent made glorious summer by this sun of York"
    tokens = arm_run.encode(text)
    assert len(tokens) > 8
    # one window: log p(text | EOS) from a single forward pass
    ids = torch.tensor([arm_run.eos_id, *tokens])
    logp = arm_run.model(ids[None])[0].double().log_softmax(-1)
    whole = logp[torch.arange(len(tokens)), ids[1:]].sum().item()
    assert rolling_loglik(arm_run, text, max_length=len(tokens) + 1) == pytest.approx(whole, abs=1e-6)
    # several windows of 6 tokens
    expected = sum(
        ar_log_likelihood(arm_run.model, torch.tensor(c), torch.tensor(p)).mean
        for c, p in rolling_windows(tokens, arm_run.eos_id, 6)
    )
    assert rolling_loglik(arm_run, text, max_length=6) == pytest.approx(expected, abs=1e-9)
    assert rolling_loglik(arm_run, text, max_length=6) != pytest.approx(whole, abs=1e-3)


def test_llada_rolling_loglik_is_seeded(llada_run):
    text = "Now is the winter of our discontent"
    a = rolling_loglik(llada_run, text, max_length=8, mc_num=4, seed=0)
    assert a < 0 and a == rolling_loglik(llada_run, text, max_length=8, mc_num=4, seed=0)
    assert a != rolling_loglik(llada_run, text, max_length=8, mc_num=4, seed=1)


def test_is_greedy_arm(arm_run):
    prompt = arm_run.encode("KING HENRY.\nWhat")
    seq = generate_ar(arm_run.model, torch.tensor([prompt]), max_new_tokens=5, temperature=0.0)
    greedy = seq[0, len(prompt) :].tolist()
    assert is_greedy(arm_run, prompt, greedy)
    other = [*greedy[:-1], (greedy[-1] + 1) % arm_run.cfg.model.vocab_size]
    assert not is_greedy(arm_run, prompt, other)


def test_is_greedy_llada_is_one_token_per_step_greedy_decoding(llada_run):
    prompt = llada_run.encode("KING HENRY.\nWhat")
    seq = generate(
        llada_run.model, torch.tensor([prompt]), gen_length=5, steps=5, block_length=5, mask_id=llada_run.mask_id
    )
    greedy = seq[0, len(prompt) :].tolist()
    assert is_greedy(llada_run, prompt, greedy)
    other = [(greedy[0] + 1) % llada_run.cfg.model.vocab_size, *greedy[1:]]
    assert not is_greedy(llada_run, prompt, other)


def test_is_greedy_llada_decodes_with_the_guidance_of_its_likelihood():
    # token 0 vs token 1 at every position: with the prompt visible logits (0.1, 0), with it masked (1, 0);
    # plain greedy picks 0, guidance at scale 1 picks un + 2 (cond - un) = (-0.8, 0): token 1.
    mask_id, prompt = 5, [2, 3]

    def model(input_ids):
        visible = (input_ids[:, : len(prompt)] != mask_id).all(dim=1)
        logits = torch.full((*input_ids.shape, 5), -10.0)
        logits[..., 0] = torch.where(visible, 0.1, 1.0)[:, None]
        logits[..., 1] = 0.0
        return logits

    loaded = types.SimpleNamespace(model=model, decoder=DiffusionDecoder(mask_id), device="cpu", mask_id=mask_id)
    assert is_greedy(loaded, prompt, [0, 0, 0]) and not is_greedy(loaded, prompt, [1, 1, 1])
    assert is_greedy(loaded, prompt, [1, 1, 1], cfg_scale=1.0) and not is_greedy(
        loaded, prompt, [0, 0, 0], cfg_scale=1.0
    )


def test_is_greedy_llada_commits_one_token_per_step_most_confident_first():
    """LLaDA's `suffix_greedy_prediction` (eval_llada.py): all answer positions masked, then per step the single most
    confident argmax is committed and the model is run again. Here the second answer position is sure of token 3;
    the first predicts token 4 while the second is masked and token 5 once it shows 3. Greedy one at a time: the
    second position first (more confident), then the first sees it: [5, 3]. All tokens in one step, or left to
    right one at a time, would give [4, 3]."""
    mask_id, prompt = 9, [1, 2]

    def model(input_ids):
        logits = torch.zeros(*input_ids.shape, 9)
        second_visible = input_ids[:, 3] == 3
        logits[:, 2, 4] = torch.where(second_visible, 0.0, 1.0)  # p = e / (e + 8) = 0.25 while masked
        logits[:, 2, 5] = torch.where(second_visible, 1.0, 0.0)
        logits[:, 3, 3] = 5.0  # p = e^5 / (e^5 + 8) = 0.95
        return logits

    loaded = types.SimpleNamespace(model=model, decoder=DiffusionDecoder(mask_id), device="cpu", mask_id=mask_id)
    assert is_greedy(loaded, prompt, [5, 3]), "one token per step, most confident first, decodes [5, 3]"
    assert not is_greedy(loaded, prompt, [4, 3])
