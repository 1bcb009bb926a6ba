"""The fast CPU dropout behaves as dropout, and the attention path that uses it computes what SDPA computes."""
import pytest
import torch

from common.cpu_dropout import ATTENTION_NAME, LANES, FastDropout, enable_fast_cpu_dropout, fast_dropout


def test_drop_rate_scale_and_expectation():
    torch.manual_seed(0)
    x = torch.full((2000, 1000), 3.0)
    y = fast_dropout(x, 0.1)
    dropped = (y == 0).float().mean().item()
    assert dropped == pytest.approx(round(0.1 * LANES) / LANES, abs=0.0015)  # 2M draws: 4-5 standard errors
    kept_value = 3.0 * LANES / (LANES - round(0.1 * LANES))
    assert torch.allclose(y[y != 0], torch.tensor(kept_value))
    assert y.mean().item() == pytest.approx(3.0, rel=0.003)  # unbiased, as nn.Dropout


@pytest.mark.parametrize("p", [0.5, 0.9])
def test_every_bit_lane_is_random(p):
    # Four mask values come from each 64-bit draw; a constant bit in one lane would skew every fourth value.
    torch.manual_seed(1)
    y = fast_dropout(torch.ones(400_000), p)
    for lane in range(4):
        assert (y[lane::4] == 0).float().mean().item() == pytest.approx(p, abs=0.006)


def test_identity_outside_training_and_at_zero():
    x = torch.randn(7, 5)
    assert fast_dropout(x, 0.3, training=False) is x
    assert fast_dropout(x, 0.0) is x
    assert torch.equal(fast_dropout(x, 1.0), torch.zeros_like(x))


def test_gradient_is_the_mask_times_the_scale():
    torch.manual_seed(2)
    x = torch.randn(64, 33, requires_grad=True)
    y = fast_dropout(x, 0.25)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad, kept.float() / 0.75, atol=1e-6)


def test_seeded_masks_repeat_and_follow_the_generator_state():
    x = torch.ones(10_000)
    torch.manual_seed(3)
    first = fast_dropout(x, 0.1)
    state = torch.get_rng_state()
    second = fast_dropout(x, 0.1)
    torch.manual_seed(3)
    assert torch.equal(fast_dropout(x, 0.1), first)
    torch.set_rng_state(state)  # what a resumed checkpoint restores
    assert torch.equal(fast_dropout(x, 0.1), second)
    assert not torch.equal(first, second)


def small_bert(dropout: float):
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(0)
    config = BertConfig(vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                        intermediate_size=128, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return BertForQuestionAnswering._from_config(config, attn_implementation="sdpa")


def padded_batch():
    ids = torch.randint(5, 100, (3, 20), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0  # padding in two of the rows: the attention mask matters
    mask[2, 5:] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_swap_covers_bert_and_lora_dropouts_and_keeps_weights():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(small_bert(0.1), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1,
                                                       target_modules=["query", "value"], modules_to_save=["qa_outputs"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # embeddings 1 + 3 per layer (attention probabilities, whose p the attention function reads; attention output;
    # FFN output) + LoRA's dropout on query and value in each layer
    assert enable_fast_cpu_dropout(model) == 1 + 3 * 2 + 2 * 2
    assert not any(type(m) is torch.nn.Dropout for m in model.modules())
    assert all(m.p == 0.1 for m in model.modules() if isinstance(m, FastDropout))
    assert model.get_base_model().config._attn_implementation == ATTENTION_NAME
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_evaluation_is_unchanged_and_training_drops():
    reference, fast = small_bert(0.3), small_bert(0.3)
    enable_fast_cpu_dropout(fast)
    batch = padded_batch()
    reference.eval()
    fast.eval()
    with torch.no_grad():
        assert torch.equal(fast(**batch).start_logits, reference(**batch).start_logits)
        fast.train()
        torch.manual_seed(4)
        one = fast(**batch).start_logits
        two = fast(**batch).start_logits
    assert not torch.allclose(one, two)  # masks are drawn afresh each call


def test_training_attention_path_matches_sdpa_when_nothing_is_dropped():
    # A rate so small that it rounds to no drop at all, but not zero: training takes the explicit attention path
    # (scores, padding bias, softmax, weighted sum), which must equal SDPA's result in evaluation.
    model = small_bert(1e-9)
    enable_fast_cpu_dropout(model)
    batch = padded_batch()
    with torch.no_grad():
        model.train()
        trained_path = model(**batch)
        model.eval()
        sdpa_path = model(**batch)
    real = batch["attention_mask"].bool()
    assert torch.allclose(trained_path.start_logits[real], sdpa_path.start_logits[real], atol=1e-5)
    assert torch.allclose(trained_path.end_logits[real], sdpa_path.end_logits[real], atol=1e-5)


def test_saved_config_does_not_name_the_cpu_attention(tmp_path):
    # The saved model must load anywhere, without this module registered.
    model = small_bert(0.1)
    enable_fast_cpu_dropout(model)
    model.save_pretrained(tmp_path)
    assert ATTENTION_NAME not in (tmp_path / "config.json").read_text()
