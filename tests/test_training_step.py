"""The training step at GPU speed, proved on a CPU: no host-device synchronisation inside a step, batches built by
a gather, bucketed static shapes, zero graph breaks for all five methods, bounded recompiles, and compiled equal
to eager (dropout off)."""
import dataclasses

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from common.batches import BUCKET, PackedWindows, batch_collator, pad_multiple, padded_length
from common.compile import compile_training_step
from common.config import parse_config
from common.data import SMOKE_TRAIN_FILE, align_training_answers, load_squad_file
from common.feature_cache import build_features
from common.model import ensure_smoke_model, load_model
from common.patches import (
    ACCELERATE_LOMO_CHECK_SHA256, BNB_LINEAR4BIT_FORWARD_SHA256, PEFT_DEQUANTIZE_SHA256, PEFT_DORA_LORA_WEIGHT_SHA256,
    apply_compile_patches, dequantize_module_weight, dora_weight_product, source_hash,
)
from common.preprocess import MODEL_INPUTS, prepare_train_features
from common.trainer import collate_without_length, forward_and_loss, make_trainer_class, training_arguments

METHODS = ["full", "lora", "qlora", "dora", "qdora"]
MAX_LENGTH = 128


@pytest.fixture(scope="module")
def features(smoke_tokenizer):
    examples, _ = align_training_answers(load_squad_file(SMOKE_TRAIN_FILE)[:60])
    built, _ = build_features(examples, prepare_train_features, tokenizer=smoke_tokenizer, max_seq_length=MAX_LENGTH,
                              doc_stride=48, use_cache=False, description="test")
    return built


@pytest.fixture(scope="module")
def windows(features):
    return PackedWindows.from_features(features, max_length=MAX_LENGTH)


def smoke_model(method, *extra):
    config = parse_config("base", method, ["--smoke", *extra])
    return config, load_model(config, model_name=str(ensure_smoke_model()))


def smoke_model_without_dropout(method):
    """The smoke model in training mode with every dropout off: two ways of computing a step then compute the same
    function (training mode kept: in eval mode bitsandbytes repacks 4-bit weights for AVX512-BF16 CPUs, another
    code path than training's)."""
    _, model = smoke_model(method, "--fast_cpu_dropout", "false")
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model.train()


# ---------------------------------------------------------------------------------------------------------
# Batches


@pytest.mark.parametrize("multiple", [1, 8])
def test_packed_batch_equals_the_tokenizer_collator(features, windows, smoke_tokenizer, multiple):
    indices = [5, 0, 17, 3, 11, 2, 30, 8]
    rows = [{k: features[k][i] for k in [*MODEL_INPUTS, "start_positions", "end_positions", "length"]} for i in indices]
    expected = collate_without_length(smoke_tokenizer, pad_to_multiple_of=multiple if multiple > 1 else None)(rows)
    got = windows.batch(indices, pad_to_multiple_of=multiple)
    assert got.keys() == expected.keys()
    for key in got:
        assert torch.equal(got[key], expected[key].to(torch.int64)), key


@pytest.mark.parametrize("bucket, widths", [(64, [64, 64, 128, 256, 384, 384]), (16, [16, 64, 80, 208, 336, 384])])
def test_buckets_pad_to_multiples_of_the_width_capped_at_max_length(windows, bucket, widths):
    assert [padded_length(n, multiple=bucket, cap=384) for n in (1, 64, 65, 200, 330, 384)] == widths
    assert padded_length(100, multiple=bucket, cap=MAX_LENGTH) == -(-100 // bucket) * bucket
    assert padded_length(100, multiple=1, cap=128) == 100
    order = np.argsort(-windows.lengths, kind="stable")
    shapes = set()
    for start in range(0, len(windows), 16):
        chosen = order[start:start + 16]
        batch = windows.batch(chosen, pad_to_multiple_of=bucket)
        width = batch["input_ids"].shape[1]
        shapes.add(width)
        assert width == min(MAX_LENGTH, -(-int(windows.lengths[chosen].max()) // bucket) * bucket)
        assert torch.equal(batch["attention_mask"].sum(1), torch.tensor(windows.lengths[chosen]))
        assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()  # padding is [PAD], masked
    assert shapes <= set(range(bucket, MAX_LENGTH + 1, bucket))
    assert pad_multiple(few_shapes=True, on_gpu=True, bucket=bucket) == bucket


def test_the_compiled_path_pads_to_the_configured_bucket_width():
    assert BUCKET == 16 == parse_config("base", "lora", []).bucket_width
    assert pad_multiple(few_shapes=True, on_gpu=False) == BUCKET
    assert pad_multiple(few_shapes=False, on_gpu=True, bucket=64) == 8  # uncaptured GPU steps: tensor-core multiples
    assert pad_multiple(few_shapes=False, on_gpu=False, bucket=64) == 1


def test_features_padded_to_max_length_pack_like_unpadded_ones(smoke_tokenizer, windows):
    examples, _ = align_training_answers(load_squad_file(SMOKE_TRAIN_FILE)[:60])
    padded, _ = build_features(examples, prepare_train_features, tokenizer=smoke_tokenizer, max_seq_length=MAX_LENGTH,
                               doc_stride=48, pad_to_max_length=True, use_cache=False, description="test")
    other = PackedWindows.from_features(padded, max_length=MAX_LENGTH)
    for field in ("input_ids", "token_type_ids", "starts", "lengths", "start_positions", "end_positions"):
        assert np.array_equal(getattr(other, field), getattr(windows, field)), field


def test_packing_respects_a_selection_of_the_features(features, windows):
    chosen = PackedWindows.from_features(features.select(range(10, 20)), max_length=MAX_LENGTH)
    assert len(chosen) == 10
    assert torch.equal(chosen.batch(range(10))["input_ids"], windows.batch(range(10, 20))["input_ids"])


def test_the_dataloader_hands_the_collator_whole_batches(windows):
    loader = torch.utils.data.DataLoader(windows, batch_size=4, collate_fn=batch_collator(windows))
    first = next(iter(loader))
    assert torch.equal(first["input_ids"], windows.batch([0, 1, 2, 3])["input_ids"])


# ---------------------------------------------------------------------------------------------------------
# No host-device synchronisation inside a training step

# Ops that make the host wait for the device: reading a value (.item(), bool(), float()) and ops whose output
# size depends on the data.
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "equal", "unique", "_unique2", "unique_consecutive"}


class SyncCounter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.syncs, self.ops = [], 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if func.__name__.split(".")[0] in SYNCING:
            self.syncs.append(func.__name__)
        return func(*args, **(kwargs or {}))


def test_the_sync_counter_sees_a_sync():
    with SyncCounter() as counter:
        bool(torch.ones(3).sum() > 0)
        torch.ones(3).nonzero()
    assert counter.syncs == ["_local_scalar_dense.default", "nonzero.default"]


@pytest.mark.parametrize("method", METHODS)
def test_training_steps_never_wait_for_the_device(method, windows, tmp_path):
    """Forward, backward, clipping, optimizer and scheduler of every step outside logging steps: zero syncs."""
    from transformers import TrainerCallback

    per_step = {}

    class CountEachStep(TrainerCallback):  # step_begin..step_end spans the whole step; logging comes after
        def on_step_begin(self, args, state, control, **kwargs):
            self.counter = SyncCounter().__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            self.counter.__exit__(None, None, None)
            per_step[state.global_step] = (self.counter.syncs, self.counter.ops)

    config, model = smoke_model(method, "--logging_steps", "3", "--report_to", "none")
    args = training_arguments(config, precision="fp32", output_dir=tmp_path)
    args.max_steps, args.disable_tqdm = 5, True
    trainer = make_trainer_class()(model=model, args=args, train_dataset=windows, data_collator=batch_collator(windows),
                                   callbacks=[CountEachStep()])
    trainer.train()
    assert sorted(per_step) == [1, 2, 3, 4, 5]
    assert all(ops > 100 for _, ops in per_step.values())  # the counter did see the step's work
    assert {step: syncs for step, (syncs, _) in per_step.items() if syncs} == {}
    assert trainer.args.logging_nan_inf_filter is False  # the Trainer's own per-step loss read is off


def test_flops_are_counted_without_walking_the_parameters_each_step(windows, tmp_path, monkeypatch):
    config, model = smoke_model("full", "--report_to", "none")
    calls = []
    original = type(model).num_parameters
    monkeypatch.setattr(type(model), "num_parameters", lambda self, **kw: calls.append(1) or original(self, **kw))
    args = training_arguments(config, precision="fp32", output_dir=tmp_path)
    args.max_steps, args.disable_tqdm = 4, True
    trainer = make_trainer_class()(model=model, args=args, train_dataset=windows, data_collator=batch_collator(windows))
    trainer.train()
    assert trainer.state.total_flos > 0 and len(calls) == 1


# ---------------------------------------------------------------------------------------------------------
# Compiled: no graph break, few compilations, the same numbers


@pytest.mark.parametrize("method", METHODS)
def test_no_graph_break_in_the_training_forward(method, windows):
    _, model = smoke_model(method, "--fast_cpu_dropout", "false")
    apply_compile_patches()
    from common.patches import prepare_4bit_layers_for_compile

    prepare_4bit_layers_for_compile(model)
    batch = windows.batch(range(16), pad_to_multiple_of=BUCKET)
    torch._dynamo.reset()
    from common.frozen_weights import frozen_4bit_weights_in
    from common.fused_qkv import training_projections

    # As QATrainer.train compiles it: the attention's training projections, DoRA's one-product B·A, the 4-bit
    # weights' scales dequantized once.
    with training_projections(model), dora_weight_product(model) as dora_product, \
            frozen_4bit_weights_in(model) as frozen_4bit:
        assert dora_product == (method in ("dora", "qdora")) and (frozen_4bit > 0) == (method in ("qlora", "qdora"))
        for _ in range(2):  # the first call is where bitsandbytes used to change its own state
            explained = torch._dynamo.explain(forward_and_loss)(model.train(), batch)
            assert (explained.graph_break_count, explained.graph_count) == (0, 1), [
                str(r.reason).splitlines()[0] for r in explained.break_reasons]
    torch._dynamo.reset()


def epoch_of_batches(windows, batch_size=16, bucket=BUCKET):
    order = np.argsort(-windows.lengths, kind="stable")  # as the length-grouped sampler: lengths change slowly
    return [windows.batch(order[i:i + batch_size], pad_to_multiple_of=bucket) for i in range(0, len(order), batch_size)]


def windows_cut_to(windows, longest):
    """The same windows cut to `longest` tokens (labels moved to [CLS]): shorter shapes than the smoke data has."""
    return dataclasses.replace(windows, lengths=np.minimum(windows.lengths, longest),
                               start_positions=np.zeros_like(windows.start_positions),
                               end_positions=np.zeros_like(windows.end_positions))


@pytest.mark.parametrize("scope, compilations, bucket", [
    ("model", 1, 64),
    # Each layer compiles once for all shapes, but the first layer's input does not require grad (LoRA freezes the
    # embeddings) while the others' do: two graphs, whatever the number of buckets and batch sizes.
    ("layers", 2, 64),
    # The default width: every one of the 8 widths up to the smoke model's 128 tokens, past torch's limit of 8
    # compilations of one frame if each width compiled again.
    ("layers", 2, 16),
    ("model", 1, 16),
])
def test_compilations_do_not_grow_with_the_number_of_shapes(scope, compilations, bucket, windows):
    from torch._dynamo.testing import CompileCounterWithBackend

    batches = epoch_of_batches(windows, bucket=bucket)
    # Shapes the compiler has not seen on top of an epoch: other batch sizes, and windows cut shorter than any of the
    # smoke data at 128 tokens, for the narrow buckets.
    batches += [windows_cut_to(windows, longest).batch(range(n), pad_to_multiple_of=bucket)
                for longest in range(bucket - 4, 64, bucket) for n in (16, 3)]
    batches += [windows.batch(range(5), pad_to_multiple_of=bucket)]
    shapes = {tuple(b["input_ids"].shape) for b in batches}
    assert len(shapes) >= 4 and {s[1] for s in shapes} == set(range(bucket, MAX_LENGTH + 1, bucket))
    _, model = smoke_model("lora", "--fast_cpu_dropout", "false")
    torch._dynamo.reset()
    counter = CompileCounterWithBackend("aot_eager")
    step, _ = compile_training_step(model.train(), scope=scope, backend=counter)
    for batch in batches:
        step(model, batch).backward()
    assert counter.frame_count == compilations
    torch._dynamo.reset()


def loss_and_grads(model, batch, step=forward_and_loss):
    model.zero_grad()
    loss = step(model, batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method, scope, backend", [
    ("full", "model", "aot_eager"), ("lora", "layers", "aot_eager"), ("qdora", "model", "aot_eager"),
    ("lora", "layers", "inductor"),  # the real code generator, once (CPU C++ kernels)
])
def test_compiled_step_equals_eager_with_dropout_off(method, scope, backend, windows):
    model = smoke_model_without_dropout(method)
    batch = windows.batch(range(8), pad_to_multiple_of=BUCKET)
    eager_loss, eager_grads = loss_and_grads(model, batch)
    torch._dynamo.reset()
    step, cudagraphs = compile_training_step(model, scope=scope, backend=backend)
    assert not cudagraphs
    compiled_loss, compiled_grads = loss_and_grads(model, batch, step)
    torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-5)
    assert compiled_grads.keys() == eager_grads.keys()
    for name in eager_grads:
        torch.testing.assert_close(compiled_grads[name], eager_grads[name], rtol=1e-4, atol=1e-5, msg=name)
    torch._dynamo.reset()


def test_bucket_padding_does_not_change_the_loss(windows):
    _, model = smoke_model("full")
    model.eval()
    with torch.no_grad():
        tight = forward_and_loss(model, windows.batch(range(8)))
        bucketed = forward_and_loss(model, windows.batch(range(8), pad_to_multiple_of=BUCKET))
    assert bucketed.item() == pytest.approx(tight.item(), abs=1e-5)


# ---------------------------------------------------------------------------------------------------------
# The library patches: pinned to the sources they replace


def test_patched_library_sources_are_the_ones_the_patches_were_written_for():
    """Fails when peft, bitsandbytes or accelerate change the code patched here: re-check common/patches.py, then
    update."""
    from accelerate.utils import imports
    from bitsandbytes.nn import Linear4bit
    from peft.utils import integrations

    assert source_hash(integrations.dequantize_module_weight) == PEFT_DEQUANTIZE_SHA256
    assert source_hash(Linear4bit.forward) == BNB_LINEAR4BIT_FORWARD_SHA256
    assert source_hash(imports.is_lomo_available) == ACCELERATE_LOMO_CHECK_SHA256
    from peft.tuners.lora.dora import DoraLinearLayer

    assert source_hash(DoraLinearLayer.get_lora_weight) == PEFT_DORA_LORA_WEIGHT_SHA256


def test_optimizer_steps_do_not_search_for_packages(windows, tmp_path, monkeypatch):
    import importlib.util

    import accelerate.optimizer
    from accelerate.utils import imports

    config, model = smoke_model("lora", "--report_to", "none")
    args = training_arguments(config, precision="fp32", output_dir=tmp_path)
    args.max_steps, args.disable_tqdm = 3, True
    trainer = make_trainer_class()(model=model, args=args, train_dataset=windows, data_collator=batch_collator(windows))
    assert accelerate.optimizer.is_lomo_available() == imports.is_lomo_available()  # the same answer, asked once
    searches = []
    original = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda *a, **k: searches.append(a[0]) or original(*a, **k))
    trainer.train()
    # accelerate asks once more while preparing the optimizer; unpatched, each step would add two searches.
    assert searches.count("lomo_optim") <= 1 and trainer.state.global_step == 3


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_patched_dequantize_equals_peft(method):
    from peft.utils.integrations import dequantize_module_weight as peft_dequantize

    _, model = smoke_model(method)
    layer = next(m for n, m in model.named_modules() if n.endswith("attention.self.query.base_layer"))
    torch.testing.assert_close(dequantize_module_weight(layer), peft_dequantize(layer), rtol=0, atol=0)


class CountOps(TorchDispatchMode):
    """aten operations dispatched (each a kernel or a view on a device)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def counted_step(model, batch, *, autocast: bool):
    """One forward and backward with dropout off: (loss, trained parameters' gradients, the aten ops it ran)."""
    model.zero_grad()
    counter = CountOps()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast), counter:
        loss = forward_and_loss(model, batch)
        loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, counter.ops


@pytest.mark.parametrize("method, autocast", [("dora", False), ("dora", True), ("qdora", True)])
def test_dora_weight_product_equals_peft_with_fewer_operations(method, autocast, windows):
    from peft.tuners.lora.dora import DoraLinearLayer

    model = smoke_model_without_dropout(method)
    layers = [m for m in model.modules() if isinstance(m, DoraLinearLayer)]
    batch = windows.batch(range(8), pad_to_multiple_of=BUCKET)
    peft_loss, peft_grads, peft_ops = counted_step(model, batch, autocast=autocast)
    original = DoraLinearLayer.get_lora_weight
    with dora_weight_product(model) as applied:
        assert applied and DoraLinearLayer.get_lora_weight is not original
        loss, grads, ops = counted_step(model, batch, autocast=autocast)
        layer = model.base_model.model.bert.encoder.layer[0].attention.self.query
        adapter = layer.active_adapters[0]
        with torch.no_grad():
            ours = layer.lora_magnitude_vector[adapter].get_lora_weight(
                lora_A=layer.lora_A[adapter], lora_B=layer.lora_B[adapter], adapter_name=adapter)
    assert DoraLinearLayer.get_lora_weight is original  # peft's own again after training
    with torch.no_grad():
        peft_product = layer.lora_magnitude_vector[adapter].get_lora_weight(
            lora_A=layer.lora_A[adapter], lora_B=layer.lora_B[adapter], adapter_name=adapter)
    torch.testing.assert_close(ours, peft_product, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(loss, peft_loss, rtol=1e-6, atol=1e-6)
    assert grads.keys() == peft_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], peft_grads[name], rtol=1e-5, atol=1e-6, msg=name)
    # No identity matrix any more, and one matrix product fewer per DoRA layer.
    assert "aten.eye.default" in peft_ops and "aten.eye.default" not in ops
    products = ("aten.mm.default", "aten.addmm.default")
    assert sum(op in products for op in peft_ops) - sum(op in products for op in ops) == len(layers)
    assert len(peft_ops) - len(ops) >= 3 * len(layers)


def test_dora_weight_product_leaves_other_models_and_changed_peft_alone(monkeypatch, caplog):
    from peft.tuners.lora import dora

    _, lora = smoke_model("lora")
    with dora_weight_product(lora) as applied:
        assert not applied
    _, model = smoke_model("dora")
    monkeypatch.setattr("common.patches.PEFT_DORA_LORA_WEIGHT_SHA256", "0" * 16)  # as if peft had changed it
    original = dora.DoraLinearLayer.get_lora_weight
    with caplog.at_level("WARNING", logger="bertimbau_qa"), dora_weight_product(model) as applied:
        assert not applied and dora.DoraLinearLayer.get_lora_weight is original
    assert "DoraLinearLayer.get_lora_weight is not the source" in caplog.text


@pytest.mark.parametrize("method, swapped_per_layer, qa_head", [
    # LoRA: the attention output's base layer and the two feed-forward layers (query, key and value are fused by
    # the training projections, from their own bf16 weight). DoRA keeps its base layers in fp32 for its weight
    # norm: the feed-forward layers only. 4-bit layers are not plain Linears. Under the adapter methods the QA
    # head's frozen original (peft's modules_to_save keeps it beside the trained copy) is one more.
    ("lora", 3, 1), ("dora", 2, 1), ("qlora", 0, 1), ("full", 0, 0),
])
def test_frozen_weights_cast_once_compute_exactly_the_same(method, swapped_per_layer, qa_head, windows):
    from common.frozen_weights import frozen_weights_in
    from common.fused_qkv import training_projections

    model = smoke_model_without_dropout(method)
    batch = windows.batch(range(8), pad_to_multiple_of=BUCKET)
    with training_projections(model, dtype=torch.bfloat16):
        counted_step(model, batch, autocast=True)  # bitsandbytes sets its layers up (bias cast) on the first call
        originals = {n: p for n, p in model.named_parameters()}
        loss, grads, ops = counted_step(model, batch, autocast=True)
        with frozen_weights_in(model, torch.bfloat16) as swapped:
            frozen_loss, frozen_grads, frozen_ops = counted_step(model, batch, autocast=True)
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            assert swapped == swapped_per_layer * len(base.bert.encoder.layer) + qa_head
            casts = [n for n, p in model.named_parameters() if p is not originals[n]]
            assert len(casts) == 2 * swapped
            assert all(originals[n].dtype == torch.float32 and not originals[n].requires_grad for n in casts)
            assert all(model.get_parameter(n).dtype == torch.bfloat16 and not model.get_parameter(n).requires_grad
                       and torch.equal(model.get_parameter(n), originals[n].to(torch.bfloat16)) for n in casts)
    # Bit for bit: autocast rounded the same weights the same way, once per step before.
    assert torch.equal(frozen_loss, loss)
    assert frozen_grads.keys() == grads.keys() and all(torch.equal(frozen_grads[n], grads[n]) for n in grads)
    # Two casts fewer (weight, bias) per step for each frozen layer the forward uses (not the QA head's original).
    assert ops.count("aten._to_copy.default") - frozen_ops.count("aten._to_copy.default") == 2 * (swapped - qa_head)
    # Training over: the very same fp32 parameters again.
    assert all(p is originals[n] for n, p in model.named_parameters()) and len(originals) == len(list(model.parameters()))
    with frozen_weights_in(model, None) as none, frozen_weights_in(model, torch.float32) as fp32:
        assert none == fp32 == 0


@pytest.mark.parametrize("method", ["qlora", "qdora", "lora"])
def test_4bit_scales_dequantized_once_compute_exactly_the_same(method, windows):
    from bitsandbytes.nn import Linear4bit

    from common.frozen_weights import frozen_4bit_weights_in
    from common.fused_qkv import training_projections

    model = smoke_model_without_dropout(method)
    batch = windows.batch(range(8), pad_to_multiple_of=BUCKET)
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    states = [layer.weight.quant_state for layer in layers]
    assert all(state.nested for state in states)  # the paper's double quantization
    with training_projections(model, dtype=torch.bfloat16):
        counted_step(model, batch, autocast=True)  # bitsandbytes sets its layers up (bias cast) on the first call
        loss, grads, ops = counted_step(model, batch, autocast=True)
        with frozen_4bit_weights_in(model) as swapped:
            base = model.get_base_model() if hasattr(model, "get_base_model") else model
            # Every linear of every layer is 4-bit (query, key, value, attention output, the two feed-forward
            # layers); the QA head is not.
            assert swapped == len(layers) == (6 * len(base.bert.encoder.layer) if method != "lora" else 0)
            once_loss, once_grads, once_ops = counted_step(model, batch, autocast=True)
            assert not any(layer.weight.quant_state.nested for layer in layers)
            dora = {id(m.get_base_layer()) for m in model.modules() if getattr(m, "lora_magnitude_vector", None)}
            assert all(layer.weight.quant_state.dtype == (torch.float32 if id(layer) in dora else torch.bfloat16)
                       for layer in layers)
            assert all(torch.equal(layer.weight.quant_state.absmax, bnb_scales(state))
                       for layer, state in zip(layers, states))
    # Bit for bit: the same scales, computed once instead of before every use.
    assert torch.equal(once_loss, loss)
    assert once_grads.keys() == grads.keys() and all(torch.equal(once_grads[n], grads[n]) for n in grads)
    # On a CPU the forward's 4-bit GEMM dequantizes the scales inside one operation; each input gradient (and each
    # QDoRA weight norm) did it in two operations of its own. The smoke model's first layer needs no input gradient
    # for its query, key and value (LoRA freezes the embeddings); QLoRA's query, key and value are one fused 4-bit
    # weight, whose scales the training projections dequantize themselves (common/fused_qkv.py): 3 + 3 uses for
    # QLoRA (attention output, feed-forward), 3 + 6 for QDoRA, and its 4 + 4 weight norms. Outside DoRA's base
    # layers (QDoRA: the two feed-forward layers of each layer) an input gradient no longer casts the weight.
    uses = {"qlora": 3 + 3, "qdora": 3 + 6 + 4 * 2, "lora": 0}[method]
    casts = {"qlora": 3 + 3, "qdora": 2 + 2, "lora": 0}[method]
    for op, fewer in (("bitsandbytes.dequantize_blockwise.default", uses), ("aten.add_.Tensor", uses),
                      ("aten._to_copy.default", casts)):
        assert ops.count(op) - once_ops.count(op) == fewer, op
    assert once_ops.count("bitsandbytes.dequantize_blockwise.default") == 0
    # Training over: the very same quantization states again.
    assert all(layer.weight.quant_state is state for layer, state in zip(layers, states))


def bnb_scales(state):
    """The block scales of a double-quantized 4-bit weight as bitsandbytes' dequantize_4bit computes them."""
    import bitsandbytes as bnb

    return (bnb.functional.dequantize_blockwise(state.absmax, state.state2) + state.offset).float()
