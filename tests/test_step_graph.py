"""The whole training step captured per batch shape (common/step_graph.py), proved on a CPU.

CUDA graphs need a GPU, so the capture is replaced by a stand-in with their semantics: capturing records the
step's operations (below autograd, as a CUDA graph records kernels) and leaves every tensor that existed before
as it was (a capture runs nothing); a replay runs the recorded operations again on the recorded tensors, with the
Python values of the capture baked in. Training through it must give the same numbers as the Trainer's own step.
"""
import importlib
import logging

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from common.batches import BUCKET, PackedWindows, batch_collator
from common.config import ConfigError, parse_config
from common.model import (
    ensure_smoke_model, load_model, plan_training_step, resolve_compile, resolve_cuda_graphs,
)
from common.run import main
from common.step_graph import StepGraphs
from common.trainer import graphs_used, make_trainer_class, training_arguments


def _storage(tensor):
    return tensor.untyped_storage().data_ptr()


class _Recorder(TorchDispatchMode):
    """Records every operation; snapshots the storage of a tensor made before the capture when it is first written."""

    def __init__(self):
        super().__init__()
        self.ops, self.created, self.saved = [], set(), {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default:
            raise RuntimeError("operation not permitted when stream is capturing")  # as CUDA says
        schema = func._schema
        for argument, value in zip(schema.arguments, list(args) + [kwargs.get(a.name) for a in schema.arguments[len(args):]]):
            if argument.alias_info is not None and argument.alias_info.is_write:
                for tensor in [v for v in (value if isinstance(value, (list, tuple)) else [value])
                               if isinstance(v, torch.Tensor)]:
                    if _storage(tensor) not in self.created and _storage(tensor) not in self.saved:
                        self.saved[_storage(tensor)] = (tensor.untyped_storage(), tensor.untyped_storage().clone())
        result = func(*args, **kwargs)
        inputs = {_storage(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for tensor in tree_flatten(result)[0]:
            if isinstance(tensor, torch.Tensor) and _storage(tensor) not in inputs:
                self.created.add(_storage(tensor))
        self.ops.append((func, args, kwargs, result))
        return result


def record_capture(step):
    """A CPU stand-in for `common.step_graph.capture_cuda_graph`: (replay, the step's outputs)."""
    with _Recorder() as recorder:
        outputs = step()
    for storage, snapshot in recorder.saved.values():  # a capture runs nothing: what existed before is unchanged
        storage.copy_(snapshot)

    @torch.no_grad()  # below autograd, as kernels are
    def replay():
        for func, args, kwargs, recorded in recorder.ops:
            fresh = func(*args, **kwargs)
            for out, new in zip(tree_flatten(recorded)[0], tree_flatten(fresh)[0]):
                if isinstance(out, torch.Tensor) and _storage(out) != _storage(new):
                    out.detach().copy_(new)  # into the memory the later operations read, as a graph's kernels do

    return replay, outputs


# ---------------------------------------------------------------------------------------------------------
# The stand-in behaves as a CUDA graph


def test_a_capture_runs_nothing_and_a_replay_runs_the_recorded_step():
    weight, static = torch.ones(3), torch.full((3,), 2.0)
    rate = 0.5

    def step():
        loss = (weight * static).sum()
        weight.sub_(rate * static)  # a state update, with a Python float
        return loss

    replay, loss = record_capture(step)
    assert torch.equal(weight, torch.ones(3))  # captured, not run
    rate = 100.0  # a Python value changed after the capture: the graph keeps 0.5
    static.copy_(torch.tensor([1.0, 2.0, 3.0]))
    replay()
    assert loss.item() == 6.0 and torch.equal(weight, torch.tensor([0.5, 0.0, -0.5]))
    replay()
    assert loss.item() == -1.0 and torch.equal(weight, torch.tensor([0.0, -1.0, -2.0]))


def test_reading_a_value_on_the_host_fails_the_capture_as_on_a_gpu():
    with pytest.raises(RuntimeError, match="capturing"):
        record_capture(lambda: torch.ones(2).sum().item())


# ---------------------------------------------------------------------------------------------------------
# Training through step graphs gives the Trainer's own numbers


def two_shape_windows(n=48):
    """Windows of two lengths, batches of two shapes: each shape is warmed up, captured, then replayed."""
    generator = np.random.default_rng(0)
    lengths = np.where(np.arange(n) % 2 == 0, 40, 100).astype(np.int64)
    return PackedWindows(input_ids=generator.integers(5, 200, size=int(lengths.sum())).astype(np.int32),
                         token_type_ids=np.zeros(int(lengths.sum()), dtype=np.int8),
                         starts=np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), lengths=lengths,
                         start_positions=generator.integers(1, 30, size=n), end_positions=generator.integers(30, 39, size=n),
                         max_length=128)


def shift_invariant(name):
    """Biases whose gradient is zero up to rounding: a softmax does not change when all its inputs shift by the same
    amount (the QA head's bias shifts every position's logit; a key bias every score of a query). Adam scales that
    rounding up to steps of the learning rate's size, so these follow the last bits of everything else."""
    return name.endswith(("qa_outputs.bias", "qa_outputs.modules_to_save.default.bias", "attention.self.key.bias"))


def train(method, tmp_path, *, step_graphs, capture=record_capture, steps=12, flags=(), resume=None, name=None):
    """(final trained parameters, per-step losses, gradient norms, trainer) of `steps` steps, dropout off,
    clipping active."""
    from transformers import set_seed

    config = parse_config("base", method, ["--smoke", "--report_to", "none", "--lora_dropout", "0",
                                           "--max_grad_norm", "0.05", "--warmup_ratio", "0.25", "--logging_steps", "1",
                                           "--fast_cpu_dropout", "false", *flags])
    set_seed(0)
    model = load_model(config, model_name=str(ensure_smoke_model()))
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    windows = two_shape_windows()
    args = training_arguments(config, precision="fp32", output_dir=tmp_path / (name or str(step_graphs)))
    args.max_steps, args.disable_tqdm, args.per_device_train_batch_size = steps, True, 4
    args.train_sampling_strategy = "group_by_length"
    trainer = make_trainer_class()(model=model, args=args, train_dataset=windows, data_collator=batch_collator(windows),
                                   step_graphs=step_graphs, step_graph_capture=capture)
    trainer.train(resume_from_checkpoint=resume)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    norms = [entry["grad_norm"] for entry in trainer.state.log_history if "grad_norm" in entry]
    trained = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return trained, losses, norms, trainer


@pytest.mark.parametrize("method", ["lora", "full", "qlora", "dora", "qdora"])
def test_step_graphs_train_exactly_like_the_trainer(method, tmp_path):
    reference, losses, norms, _ = train(method, tmp_path, step_graphs=False)
    graphed, graphed_losses, graphed_norms, trainer = train(method, tmp_path, step_graphs=True)
    graphs = trainer.step_graphs
    # 2 shapes: 2 uncaptured steps each, then a capture, then replays; the learning rate changed at every step
    assert (graphs.uncaptured, graphs.captures, graphs.replays) == (4, 2, 8) and graphs.disabled_because is None
    assert graphs_used(trainer) == ("step", None)
    assert len(losses) == len(graphed_losses) == 12
    assert graphed_losses == pytest.approx(losses, rel=1e-5)
    assert all(norm > 0.05 for norm in norms)  # clipping was active at every step
    assert graphed_norms == pytest.approx(norms, rel=1e-4)
    # The captured AdamW reads the learning rate as a float32 tensor, the Trainer's as a Python float: the last
    # bits differ, and nothing else.
    for name, value in reference.items():
        if not shift_invariant(name):
            torch.testing.assert_close(graphed[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_checkpoints_saved_between_replays_resume_to_the_same_weights(tmp_path):
    """A checkpoint written while steps are replayed holds the optimizer as the Trainer's own (the learning rate a
    float, nothing marked capturable), and a run resumed from it, capturing again, ends where the whole run ends."""
    whole, losses, _, _ = train("lora", tmp_path, step_graphs=True, steps=16, flags=["--save_steps", "8"], name="whole")
    checkpoint = tmp_path / "whole" / "checkpoint-8"
    groups = torch.load(checkpoint / "optimizer.pt", weights_only=False)["param_groups"]
    assert all(isinstance(g["lr"], float) and not g.get("capturable") for g in groups)
    resumed, resumed_losses, _, trainer = train("lora", tmp_path, step_graphs=True, steps=16,
                                                flags=["--save_steps", "8"], name="whole", resume=str(checkpoint))
    graphs = trainer.step_graphs  # the 8 steps after the checkpoint: warmed up and captured again
    assert graphs.uncaptured + graphs.replays == 8 and graphs.captures >= 1 and graphs.replays > graphs.captures
    assert resumed_losses[-8:] == pytest.approx(losses[-8:], rel=1e-5)
    for name, value in whole.items():
        if not shift_invariant(name):
            torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_a_learning_rate_fixed_at_capture_would_be_caught(tmp_path, monkeypatch):
    """The equality above is sensitive: replays that kept the capture's learning rate train other weights."""
    reference, *_ = train("lora", tmp_path, step_graphs=False)
    monkeypatch.setattr(StepGraphs, "_write_learning_rates", lambda self: None)
    graphed, *_ = train("lora", tmp_path, step_graphs=True)
    assert any(not torch.allclose(graphed[name], value, rtol=1e-5, atol=1e-6) for name, value in reference.items()
               if not shift_invariant(name))


def test_a_failed_capture_warns_and_trains_on_uncaptured(tmp_path, caplog):
    reference, losses, _, _ = train("lora", tmp_path, step_graphs=False)

    def failing_capture(step):
        raise RuntimeError("operation not permitted when stream is capturing")

    with caplog.at_level(logging.WARNING, logger="bertimbau_qa"):
        graphed, graphed_losses, _, trainer = train("lora", tmp_path, step_graphs=True, capture=failing_capture)
    assert "Capturing the training step in a CUDA graph failed (RuntimeError: operation not permitted" in caplog.text
    assert caplog.text.count("Capturing the training step") == 1
    assert (trainer.step_graphs.captures, trainer.step_graphs.uncaptured) == (0, 12)
    # The results row says what ran: no graphs (run.py writes the first part into `cuda_graphs`)
    assert graphs_used(trainer) == ("off", "capture failed: RuntimeError: operation not permitted when stream is "
                                           "capturing")
    assert graphed_losses == pytest.approx(losses, rel=1e-5)
    for name, value in reference.items():
        torch.testing.assert_close(graphed[name], value, rtol=1e-5, atol=1e-6, msg=name)  # the same code ran


# ---------------------------------------------------------------------------------------------------------
# Where step graphs apply


def test_where_step_graphs_apply(monkeypatch):
    def graphs(*flags, world_size=1):
        return resolve_cuda_graphs(parse_config("base", "lora", ["--smoke", *flags]), world_size=world_size)

    assert graphs() == ("off", "no CUDA GPU")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert graphs()[0] == "step"
    assert graphs("--torch_compile", "false")[0] == "step"  # the eager step is captured as well
    assert graphs("--cuda_graphs", "off") == ("off", "--cuda_graphs off")
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: True)  # trees compile: Triton asked
    assert graphs("--cuda_graphs", "trees")[0] == "trees"
    assert graphs("--cuda_graphs", "trees", "--torch_compile", "false") == (
        "off", "--cuda_graphs trees needs torch.compile, which is off: --torch_compile false")
    assert graphs("--gradient_accumulation_steps", "2") == ("off", "--gradient_accumulation_steps > 1")
    assert graphs(world_size=2)[0] == "off"
    assert graphs("--precision", "fp16")[0] == "off"
    assert "fused AdamW" in graphs("--optim", "adamw_torch")[1]


def _a_gpu(monkeypatch, *, triton: bool, capability=(8, 0)):
    """What common.model sees on a CUDA GPU with or without a working Triton (this CPU build has neither)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a, **k: capability)
    monkeypatch.setattr("torch.utils._triton.has_triton", lambda: triton)


def test_where_compilation_applies(monkeypatch):
    def compiled(*flags, world_size=1):
        return resolve_compile(parse_config("base", "lora", ["--smoke", *flags]), world_size=world_size)

    assert compiled()[0] is False and "no CUDA GPU" in compiled()[1]
    assert compiled("--torch_compile", "true") == (True, "--torch_compile true")  # on a CPU: inductor's C++ code
    _a_gpu(monkeypatch, triton=True)
    assert compiled() == (True, "a CUDA GPU in a single process")
    assert compiled(world_size=2)[0] is False
    assert compiled("--gradient_checkpointing")[0] is False
    assert compiled("--torch_compile", "false") == (False, "--torch_compile false")
    # Without Triton inductor cannot generate the GPU's kernels: the default runs eagerly, captured whole all the same.
    _a_gpu(monkeypatch, triton=False)
    assert compiled() == (False, "torch.compile needs Triton on a GPU, and Triton is not installed (on Windows: "
                                 "pip install triton-windows)")
    trees = plan_training_step(parse_config("base", "lora", ["--smoke", "--cuda_graphs", "trees"]), world_size=1)
    assert (trees.compiled, trees.graphs) == (False, "off")  # torch.compile's graphs without torch.compile: none
    assert trees.graphs_reason == ("--cuda_graphs trees needs torch.compile, which is off: torch.compile needs Triton "
                                   "on a GPU, and Triton is not installed (on Windows: pip install triton-windows)")

    def plan(*flags):
        step = plan_training_step(parse_config("base", "lora", ["--smoke", *flags]), world_size=1)
        return step.compiled, step.graphs, step.few_shapes, step.pad_to_multiple_of

    assert plan() == (False, "step", True, BUCKET)  # captured: padded to buckets all the same
    assert plan("--cuda_graphs", "off") == (False, "off", False, 8)  # eager and uncaptured: tensor-core multiples
    _a_gpu(monkeypatch, triton=False, capability=(6, 1))
    assert compiled()[1] == ("torch.compile needs Triton on a GPU, and this GPU's compute capability 6.1 is below "
                             "the 7.0 that Triton needs")
    with pytest.raises(ConfigError, match=r"^--torch_compile true: torch.compile needs Triton on a GPU, and this GPU's "
                                          r"compute capability 6.1 .*; pass --torch_compile false"):
        compiled("--torch_compile", "true")
    assert compiled("--torch_compile", "false") == (False, "--torch_compile false")


def test_the_planned_step_compiles_only_where_the_plan_says(monkeypatch):
    """run.py and the GPU bench's arms get their step function from the plan: the eager forward_and_loss, or the
    encoder's layers compiled; cuDNN attention allowed only where a step has few shapes."""
    from torch._dynamo.testing import CompileCounter

    from common.compile import planned_training_step
    from common.trainer import forward_and_loss

    cudnn = []
    monkeypatch.setattr("common.attention.use_cudnn_attention", cudnn.append)
    config = parse_config("base", "lora", ["--smoke"])
    eager = plan_training_step(config, world_size=1)._replace(few_shapes=False)
    model = load_model(config, model_name=str(ensure_smoke_model()))
    assert planned_training_step(model, eager, scope="layers") == (forward_and_loss, False)
    assert cudnn == [False]
    counter = CompileCounter()
    step, trees = planned_training_step(model, eager._replace(compiled=True, few_shapes=True), scope="layers",
                                        backend=counter)
    assert cudnn == [False, True] and trees is False
    torch._dynamo.reset()
    step(model.train(), two_shape_windows().batch([0, 2]))
    assert counter.frame_count >= 1  # the encoder's layers ran compiled


def test_compiling_without_triton_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    importlib.import_module("bitsandbytes")  # before CUDA is faked: it picks its backend when imported

    _a_gpu(monkeypatch, triton=False)
    results, output_dir = tmp_path / "runs.csv", tmp_path / "out"
    status = main(model_size="base", method="lora",
                  argv=["--smoke", "--torch_compile", "true", "--results_file", str(results), "--output_dir",
                        str(output_dir)])
    stderr = capsys.readouterr().err
    assert status == 2
    assert stderr.rstrip().splitlines()[-1].startswith("error: --torch_compile true: torch.compile needs Triton")
    assert "Tokenizing" not in stderr and not results.exists() and not output_dir.exists()  # nothing ran or was written
