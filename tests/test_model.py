"""Every method builds the model it claims: adapters, DoRA magnitudes, real 4-bit NF4 base weights, QA head."""
import pytest
import torch

from common.config import layered_defaults
from common.model import count_parameters, ensure_smoke_model, load_model


def build(method, **overrides):
    config = layered_defaults("base", method, smoke=True)
    for key, value in overrides.items():
        setattr(config, key, value)
    return load_model(config, model_name=str(ensure_smoke_model()))


@pytest.mark.parametrize("method", ["full", "lora", "qlora", "dora", "qdora"])
def test_method_structure(method):
    import bitsandbytes as bnb

    model = build(method)
    names = {name for name, _ in model.named_modules()}
    linear4bit = [name for name, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    lora_layers = [name for name in names if name.endswith(".lora_A")]
    magnitudes = [name for name, _ in model.named_parameters() if "lora_magnitude_vector" in name]
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if method == "full":
        assert not lora_layers and not linear4bit and all(p.requires_grad for p in model.parameters())
        return
    # 2 layers x (query, key, value, attention.output.dense); never the FFN's output.dense.
    assert len(lora_layers) == 8
    assert not any(".output.dense.lora_A" in n and ".attention." not in n for n in lora_layers)
    assert bool(magnitudes) == method.endswith("dora")
    if method.startswith("q"):
        # All encoder linears are 4-bit NF4 (2 layers x 6); the QA head is not.
        assert len(linear4bit) == 12
        weight = next(m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)).weight
        assert weight.quant_state.quant_type == "nf4" and weight.quant_state.nested  # double quantization
        assert not any("qa_outputs" in n for n in linear4bit)
    else:
        assert not linear4bit
    # Only adapters and the QA head learn.
    assert trainable and all("lora_" in n or "qa_outputs" in n for n in trainable)
    assert any("qa_outputs" in n for n in trainable)


def test_parameter_counts_count_4bit_weights_as_values_not_bytes():
    full_total = count_parameters(build("full"))[1]
    lora_trainable, lora_total = count_parameters(build("lora"))
    qlora_trainable, qlora_total = count_parameters(build("qlora"))
    assert lora_trainable == qlora_trainable
    assert lora_total == qlora_total  # same model, different storage
    # Adapters and the trained copy of the QA head are added to the frozen model's parameters.
    assert lora_total == full_total + lora_trainable


def test_qlora_trains_on_cpu():
    model = build("qlora")
    ids = torch.randint(5, 100, (2, 32))
    out = model(input_ids=ids, attention_mask=torch.ones_like(ids), start_positions=torch.tensor([3, 4]),
                end_positions=torch.tensor([5, 6]))
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert grads and all(g is not None for g in grads)


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_adapter_model_reads_token_type_ids_like_the_plain_model(method):
    # At initialisation LoRA's B is zero and DoRA's magnitude is the weight norm: the adapter model must
    # compute exactly what the plain model computes, segment ids included (peft's QA wrapper drops them).
    plain, adapted = build("full").eval(), build(method).eval()
    ids = torch.randint(5, 1000, (2, 40))
    segments = torch.zeros_like(ids)
    segments[:, 15:] = 1  # question, then context
    with torch.no_grad():
        expected = plain(input_ids=ids, token_type_ids=segments).start_logits
        got = adapted(input_ids=ids, token_type_ids=segments).start_logits
        ignoring_segments = plain(input_ids=ids).start_logits
    assert not torch.allclose(expected, ignoring_segments, atol=1e-4)  # the segments matter to this model
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("native_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_precision_on_cpu_follows_native_bf16(monkeypatch, native_bf16, expected):
    import common.model as model_module
    from common.config import parse_config

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(model_module, "cpu_has_native_bf16", lambda: native_bf16)
    assert model_module.resolve_precision(parse_config("base", "lora", [])) == expected
    # The smoke preset pins fp32 (its tiny matrices are slower in bf16); an explicit flag still wins.
    assert model_module.resolve_precision(parse_config("base", "lora", ["--smoke"])) == "fp32"
    assert model_module.resolve_precision(parse_config("base", "lora", ["--smoke", "--precision", "bf16"])) == "bf16"


@pytest.mark.parametrize("fast, expected_types", [(True, {"FastDropout"}), (False, {"Dropout"})])
def test_fast_cpu_dropout_follows_its_flag(fast, expected_types):
    model = build("lora", fast_cpu_dropout=fast)
    assert {type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.Dropout)} == expected_types
