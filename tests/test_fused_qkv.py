"""BERT's query/key/value while training (common/fused_qkv.py): one GEMM for LoRA's and QLoRA's frozen projections,
the same loss and gradients as peft's three layers, only where it applies; every method's projections on the
tokens as one matrix, the same numbers eagerly and fewer GEMMs compiled; the model unchanged afterwards."""
import contextlib

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import set_seed
from transformers.models.bert.modeling_bert import BertSelfAttention

from common.config import parse_config
from common.fused_qkv import BERT_SELF_ATTENTION_FORWARD_SHA256, forward_source_matches, training_projections
from common.model import ensure_smoke_model, load_model
from common.patches import source_hash
from common.trainer import forward_and_loss


def smoke_model(method, *flags):
    config = parse_config("base", method, ["--smoke", "--fast_cpu_dropout", "false", *flags])
    set_seed(0)
    return load_model(config, model_name=str(ensure_smoke_model())).train()


@pytest.fixture(scope="module")
def batch():
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, 200, (4, 40), generator=generator)
    mask = torch.ones_like(ids)
    mask[2:, 30:] = 0  # two windows padded
    return {"input_ids": ids * mask, "token_type_ids": torch.zeros_like(ids), "attention_mask": mask,
            "start_positions": torch.tensor([3, 5, 7, 9]), "end_positions": torch.tensor([4, 6, 8, 10])}


def step(model, batch, *, fused: bool, dtype=None):
    """(fused layers, loss, trained parameters' gradients) of one training forward and backward, dropout on."""
    model.zero_grad()
    torch.manual_seed(1)  # the same dropout masks, if drawn in the same order
    context = training_projections(model, dtype=dtype) if fused else contextlib.nullcontext(0)
    with context as layers, torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
        loss = forward_and_loss(model, batch)
    loss.backward()
    return layers, loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def test_fused_projections_give_peft_loras_loss_and_gradients(batch):
    model = smoke_model("lora")
    _, loss, grads = step(model, batch, fused=False)
    layers, fused_loss, fused_grads = step(model, batch, fused=True)
    assert layers == 2  # both encoder layers of the smoke model
    assert fused_loss.item() == loss.item()  # dropout masks drawn in peft's order, the same sums
    assert fused_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(fused_grads[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)


def test_fused_projections_under_bf16_autocast(batch):
    model = smoke_model("lora")
    _, loss, grads = step(model, batch, fused=False, dtype=torch.bfloat16)
    layers, fused_loss, fused_grads = step(model, batch, fused=True, dtype=torch.bfloat16)
    assert layers == 2
    # Forward: the same bf16 weights (autocast's cast, done once) and the same GEMMs' dot products.
    assert fused_loss.item() == loss.item()
    # Backward, the input's gradient is one GEMM accumulated in fp32 where peft adds three bf16 results: they
    # differ by bf16 rounding (8 bits of mantissa), the fused one being the more exact.
    for name in grads:
        torch.testing.assert_close(fused_grads[name], grads[name], rtol=2e-2, atol=1e-4, msg=name)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_fused_4bit_projections_give_peft_qloras_loss_and_gradients(dtype, batch):
    model = smoke_model("qlora")
    _, loss, grads = step(model, batch, fused=False, dtype=dtype)
    layers, fused_loss, fused_grads = step(model, batch, fused=True, dtype=dtype)
    assert layers == 2
    # Forward: the three 4-bit weights dequantized as one are the same bf16 values (bitsandbytes computes in bf16
    # either way), the same GEMMs' dot products, dropout masks drawn in peft's order.
    assert fused_loss.item() == loss.item()
    # Backward, the input's gradient is one bf16 GEMM (accumulated in fp32, rounded once) where peft adds three
    # bf16 results: they differ by bf16 rounding, the fused one being the more exact.
    assert fused_grads.keys() == grads.keys()
    for name in grads:
        torch.testing.assert_close(fused_grads[name], grads[name], rtol=2e-2, atol=1e-4, msg=name)


def test_fused_4bit_projections_do_less_per_step(batch):
    model = smoke_model("qlora")

    def ops_per_step(fused: bool) -> dict:
        context = training_projections(model, dtype=torch.bfloat16) if fused else contextlib.nullcontext()
        with context:  # made before the step: the fused weight and its scales are made once per training
            model.zero_grad()
            with CountOps() as ops, torch.autocast("cpu", dtype=torch.bfloat16):
                forward_and_loss(model, batch).backward()
        return ops.counts

    peft_ops, fused_ops = ops_per_step(False), ops_per_step(True)

    def fewer(op):
        return peft_ops.get(op, 0) - fused_ops.get(op, 0)

    # Forward, the 4-bit GEMMs of query, key and value: 3 -> 1 in each layer; backward, their input gradients'
    # dequantizations 3 -> 1 in each layer but the first (whose input needs no gradient) and their scales'
    # (double quantization) 3 -> 0; the copies peft makes of each 4-bit output: 3 -> 0 in each layer.
    assert (fewer("gemm_4bit"), fewer("dequantize_4bit"), fewer("dequantize_blockwise"), fewer("clone")) == (
        2 * 2, 2, 3, 2 * 3)
    assert sum(fused_ops.values()) < sum(peft_ops.values())


def test_the_model_is_unchanged_after_training_fused_4bit(batch):
    model = smoke_model("qlora")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    attention = model.base_model.model.bert.encoder.layer[0].attention.self
    with training_projections(model, dtype=torch.bfloat16) as layers:
        assert layers == 2 and attention.fused_qkv_state.shape == (3 * 64, 64) and not attention.fused_qkv_state.nested
    assert type(attention) is BertSelfAttention
    assert not hasattr(attention, "fused_qkv_weight") and not hasattr(attention, "fused_qkv_state")
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("method, flags", [
    ("full", ()), ("dora", ()), ("qdora", ()),
    ("lora", ("--target_modules", "query", "value")),  # key keeps its plain Linear: three GEMMs would not fuse
])
def test_other_methods_keep_their_layers_on_the_token_matrix(method, flags, batch):
    from transformers.models.bert.modeling_bert import BertSelfAttention

    model = smoke_model(method, *flags)
    _, loss, grads = step(model, batch, fused=False)
    layers, same_loss, same_grads = step(model, batch, fused=True)
    assert layers == 0
    # The projections through the layers themselves, on the tokens as one matrix: what `linear` computes on the
    # 3-D input anyway, so the same loss to the bit. Backward, the layer input's gradient adds the same four terms
    # (query, key, value, the residual) in another order: equal to fp32 rounding.
    assert same_loss.item() == loss.item()
    for name in grads:
        torch.testing.assert_close(same_grads[name], grads[name], rtol=1e-5, atol=1e-7, msg=name)
    with training_projections(model):
        assert sum(type(m) is not BertSelfAttention for m in model.modules() if isinstance(m, BertSelfAttention)) == 2


def test_the_model_is_unchanged_after_training(batch):
    model = smoke_model("lora")
    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with training_projections(model, dtype=torch.bfloat16) as layers:
        assert layers == 2
        attention = model.base_model.model.bert.encoder.layer[0].attention.self
        assert type(attention) is not BertSelfAttention and "fused_qkv_weight" in dict(attention.named_buffers())
        assert "fused_qkv_weight" not in model.state_dict()  # checkpoints saved while training stay as they are
    assert type(attention) is BertSelfAttention  # the class's forward again: evaluation and export see peft's layers
    assert not hasattr(attention, "fused_qkv_weight")
    assert [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()] == names
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.counts = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.__name__.split(".")[0]
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def test_fewer_kernels_per_step(batch):
    model = smoke_model("lora")
    counts = {}
    for fused in (False, True):
        with CountOps() as ops:
            step(model, batch, fused=fused, dtype=torch.bfloat16)
        counts[fused] = ops.counts
    gemms = {fused: sum(c.get(op, 0) for op in ("mm", "addmm", "bmm")) for fused, c in counts.items()}
    # Forward, 3 base GEMMs -> 1 in each layer; backward, 3 input-gradient GEMMs -> 1 in each layer but the first,
    # whose input needs no gradient (LoRA freezes the embeddings); the base weights get no gradient at all.
    assert gemms[False] - gemms[True] == 2 * 2 + 2 * 1
    casts = {fused: c.get("_to_copy", 0) for fused, c in counts.items()}
    assert casts[False] - casts[True] >= 2 * 6  # the three frozen weights and biases, cast once instead of per step
    assert sum(counts[True].values()) < sum(counts[False].values())


def test_the_replaced_forward_is_the_source_it_was_written_for():
    """Fails when transformers changes BertSelfAttention.forward: re-check common/fused_qkv.py, then update."""
    from transformers.models.bert.modeling_bert import BertSelfAttention

    assert source_hash(BertSelfAttention.forward) == BERT_SELF_ATTENTION_FORWARD_SHA256 and forward_source_matches()


def test_a_changed_transformers_keeps_its_own_forward(batch, monkeypatch, caplog):
    monkeypatch.setattr("common.fused_qkv.BERT_SELF_ATTENTION_FORWARD_SHA256", "another source")
    model = smoke_model("lora")
    with caplog.at_level("WARNING", logger="bertimbau_qa"), training_projections(model) as layers:
        assert layers == 0
    assert "LoRA keeps three projections" in caplog.text


@pytest.mark.parametrize("method", ["lora", "full", "dora", "qlora", "qdora"])
def test_the_training_projections_compile_without_a_graph_break(method, batch):
    from common.patches import apply_compile_patches, prepare_4bit_layers_for_compile

    model = smoke_model(method)
    apply_compile_patches()
    prepare_4bit_layers_for_compile(model)
    torch._dynamo.reset()
    with training_projections(model, dtype=torch.bfloat16), torch.autocast("cpu", dtype=torch.bfloat16):
        explained = torch._dynamo.explain(forward_and_loss)(model, batch)
        fused_weights = [b for n, b in model.named_buffers() if n.endswith("fused_qkv_weight")]
    torch._dynamo.reset()
    assert (explained.graph_break_count, explained.graph_count) == (0, 1), [
        str(r.reason).splitlines()[0] for r in explained.break_reasons]
    # CUDA graphs replay them in place as they do parameters, rather than copying them in at every step.
    assert len(fused_weights) == (2 if method in ("lora", "qlora") else 0)
    assert all(hasattr(w, "_dynamo_static_input_type") for w in fused_weights)


@pytest.mark.parametrize("method, compilations", [
    ("lora", 2),  # the first layer's input does not require grad (LoRA freezes the embeddings), the others' do
    ("full", 1),
])
def test_every_layer_shares_one_compilation_with_the_training_projections(method, compilations, batch):
    """`--compile_scope layers` compiles one layer for all of them; a per-layer replaced forward made the compiler
    start again at every layer, and past its limit of 8 the rest of BERTimbau-Large ran eagerly."""
    from torch._dynamo.testing import CompileCounterWithBackend

    from common.compile import compile_training_step
    from common.model import SMOKE_MODEL_SHAPE, ensure_tiny_model

    config = parse_config("base", method, ["--smoke", "--fast_cpu_dropout", "false"])
    model_dir = ensure_tiny_model(shape={**SMOKE_MODEL_SHAPE, "num_hidden_layers": 10})  # past the limit of 8
    model = load_model(config, model_name=str(model_dir)).train()
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    compiled, _ = compile_training_step(model, scope="layers", backend=counter)
    with training_projections(model) as fused:
        for _ in range(2):
            compiled(model, batch).backward()
    torch._dynamo.reset()
    assert fused == (10 if method == "lora" else 0)
    assert counter.frame_count == compilations


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_compiled_fused_step_equals_eager_fused_step(method, batch):
    from common.patches import apply_compile_patches, prepare_4bit_layers_for_compile

    model = smoke_model(method, "--lora_dropout", "0")
    for module in model.modules():  # dropout off: compiled and eager draw their masks differently
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.config.attention_probs_dropout_prob = 0.0
    apply_compile_patches()
    prepare_4bit_layers_for_compile(model)  # as compile_training_step does
    _, eager_loss, eager_grads = step(model, batch, fused=True)
    torch._dynamo.reset()
    with training_projections(model):
        compiled = torch.compile(forward_and_loss, backend="aot_eager")
        model.zero_grad()
        loss = compiled(model, batch)
        loss.backward()
    torch._dynamo.reset()
    assert loss.item() == pytest.approx(eager_loss.item(), abs=1e-6)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(dict(model.named_parameters())[name].grad, grad, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("method, precision", [
    ("lora", "fp32"), ("lora", "bf16"),  # bf16: the fused weight made in autocast's dtype
    ("qlora", "bf16"),
])
def test_the_trainer_trains_lora_with_fused_projections(method, precision, tmp_path):
    from transformers import TrainerCallback
    from transformers.models.bert.modeling_bert import BertSelfAttention

    from common.batches import PackedWindows, batch_collator
    from common.trainer import make_trainer_class, training_arguments

    seen = []

    class Look(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            seen.append(sum(hasattr(m, "fused_qkv_weight") for m in model.modules() if isinstance(m, BertSelfAttention)))

    config = parse_config("base", method, ["--smoke", "--report_to", "none"])
    model = smoke_model(method)
    lengths = torch.full((32,), 20).numpy()
    windows = PackedWindows(input_ids=torch.randint(5, 200, (640,)).int().numpy(),
                            token_type_ids=torch.zeros(640, dtype=torch.int8).numpy(),
                            starts=(torch.arange(32) * 20).numpy(), lengths=lengths,
                            start_positions=torch.full((32,), 3).numpy(), end_positions=torch.full((32,), 5).numpy(),
                            max_length=64)
    args = training_arguments(config, precision=precision, output_dir=tmp_path)
    args.max_steps, args.disable_tqdm = 2, True
    trainer = make_trainer_class()(model=model, args=args, train_dataset=windows, data_collator=batch_collator(windows),
                                   callbacks=[Look()])
    trainer.train()
    assert torch.isfinite(torch.tensor(trainer.state.log_history[-1]["train_loss"]))
    assert seen == [2, 2]  # both layers' attention fused at every step
    # and peft's layers again after training
    assert all(type(m) is BertSelfAttention for m in model.modules() if isinstance(m, BertSelfAttention))


def inductor_step_code(model, batch):
    """(loss, gradients, generated code) of one training step compiled by the scripts' compile_training_step with
    the real code generator (CPU C++ kernels), fused projections on, dropout off."""
    from torch._inductor.utils import run_and_get_code

    from common.compile import compile_training_step

    def train_step():
        compiled, _ = compile_training_step(model, scope="model", backend="inductor")
        model.zero_grad()
        with training_projections(model):
            loss = compiled(model, batch)
            loss.backward()
        return loss.detach()

    # Without the caches: a cached graph is not generated again, and its code not shown.
    with torch._inductor.config.patch(force_disable_caches=True):
        loss, code = run_and_get_code(train_step)
    torch._dynamo.reset()
    return loss, {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, "\n".join(code)


@pytest.mark.parametrize("method, fewer_gemms, more_bmm", [
    # Per layer, forward: query/key/value's three LoRA A products -> one bmm, three B products -> one (-4);
    # backward: the weight gradients of A and B and the input gradients of B and A, three each -> one (-8), but in
    # the first layer, whose input needs no gradient (LoRA freezes the embeddings), A's input gradient is not made.
    # In their place each layer's forward and backward bmm: (2 + 3) and (2 + 4).
    ("lora", 12 + 10, (2 + 3) + (2 + 4)),
    # The three projections as one GEMM of concatenated weights: forward, input gradient, weight gradient (-6).
    ("full", 2 * 6, 0),
    ("qdora", None, None),  # 4-bit bases and DoRA's branches: fewer GEMMs, in peft's and bitsandbytes' own code
])
def test_compiled_projections_are_fewer_gemms(method, fewer_gemms, more_bmm, batch, monkeypatch):
    import re

    import common.compile

    model = smoke_model(method)
    for module in model.modules():  # dropout off: compiled and eager draw their masks differently
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0  # still three dropout calls, as in training: LoRA's A products have three inputs
    model.config.attention_probs_dropout_prob = 0.0
    _, eager_loss, eager_grads = step(model, batch, fused=True)
    loss, grads, code = inductor_step_code(model, batch)
    monkeypatch.setattr(common.compile, "BATCH_LINEAR_FUSION", {})
    _, _, unbatched_code = inductor_step_code(model, batch)

    def gemms(text):
        calls = re.findall(r"extern_kernels\.(mm|addmm|bmm)\(", text)
        return len(calls), calls.count("bmm")

    (total, bmm), (unbatched_total, unbatched_bmm) = gemms(code), gemms(unbatched_code)
    if fewer_gemms is None:
        assert total < unbatched_total
    else:
        assert (unbatched_total - total, bmm - unbatched_bmm) == (fewer_gemms, more_bmm)
    assert loss.item() == pytest.approx(eager_loss.item(), abs=1e-6)
    for name, grad in eager_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-5, atol=1e-6, msg=name)
