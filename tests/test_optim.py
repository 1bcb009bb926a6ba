"""Gradient clipping folded into the fused AdamW step (common/optim.py): the same norm, the same update up to the
rounding of one division, and the Trainer uses it exactly where it may."""
import copy

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import set_seed

from common.batches import PackedWindows, batch_collator
from common.config import parse_config
from common.data import SMOKE_TRAIN_FILE, align_training_answers, load_squad_file
from common.feature_cache import build_features
from common.model import ensure_smoke_model, load_model
from common.optim import AdamWWithFoldedClipping
from common.preprocess import prepare_train_features
from common.trainer import make_trainer_class, training_arguments


def twin_parameters(seed=0):
    torch.manual_seed(seed)
    shapes = [(64, 32), (32,), (128, 64), (7,), (3, 5)]
    first = [torch.nn.Parameter(torch.randn(s)) for s in shapes]
    return first, [torch.nn.Parameter(p.detach().clone()) for p in first]


def give_gradients(params, grads):
    for p, g in zip(params, grads):
        p.grad = g.clone()


def test_folded_clipping_equals_clip_grad_norm_then_fused_adamw():
    separate, folded = twin_parameters()
    reference = torch.optim.AdamW(separate, lr=1e-2, weight_decay=0.01, fused=True)
    ours = AdamWWithFoldedClipping(folded, lr=1e-2, weight_decay=0.01, fused=True)
    clipped_steps = 0
    for step in range(30):
        grads = [torch.randn_like(p) * (5.0 if step % 3 else 1e-4) for p in separate]  # 2 in 3 steps get clipped
        give_gradients(separate, grads)
        give_gradients(folded, grads)
        norm = torch.nn.utils.clip_grad_norm_(separate, 1.0)
        reference.step()
        assert torch.equal(ours.clip_before_step(1.0), norm)  # the same norm to the bit (the logged grad_norm)
        ours.step()
        clipped_steps += bool(norm > 1.0)
    assert clipped_steps == 20
    for p, q in zip(separate, folded):
        # g / (1/c) instead of g * c: a last-place difference in a gradient, carried through 30 Adam steps.
        torch.testing.assert_close(q, p, rtol=1e-6, atol=1e-6)
    assert any(not torch.equal(p, q) for p, q in zip(separate, folded))  # it did clip by another route


def test_unclipped_steps_are_bit_for_bit_those_of_fused_adamw():
    separate, folded = twin_parameters(1)
    reference = torch.optim.AdamW(separate, lr=1e-2, fused=True)
    ours = AdamWWithFoldedClipping(folded, lr=1e-2, fused=True)
    for step in range(5):
        grads = [torch.randn_like(p) * 1e-3 for p in separate]  # norm well under 1: the coefficient is exactly 1
        give_gradients(separate, grads)
        give_gradients(folded, grads)
        torch.nn.utils.clip_grad_norm_(separate, 1.0)
        reference.step()
        ours.clip_before_step(1.0)
        ours.step()
    assert all(torch.equal(p, q) for p, q in zip(separate, folded))


def test_a_step_without_clip_before_step_does_not_clip():
    separate, folded = twin_parameters(2)
    reference = torch.optim.AdamW(separate, lr=1e-2, fused=True)
    ours = AdamWWithFoldedClipping(folded, lr=1e-2, fused=True)
    grads = [torch.randn_like(p) * 5 for p in separate]
    give_gradients(folded, grads)
    ours.clip_before_step(1.0)
    ours.step()
    assert ours.grad_scale is None  # used once
    grads = [torch.randn_like(p) * 5 for p in separate]
    for p, q in zip(separate, folded):
        p.data.copy_(q.data)
    reference.load_state_dict(copy.deepcopy(ours.state_dict()))  # the same state dict: checkpoints move between the two
    give_gradients(separate, grads)
    give_gradients(folded, grads)
    reference.step()
    ours.step()
    assert all(torch.equal(p, q) for p, q in zip(separate, folded))


class OpNames(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.__name__.split(".")[0])
        return func(*args, **(kwargs or {}))


def test_the_fold_removes_the_pass_over_the_gradients():
    separate, folded = twin_parameters(3)
    reference = torch.optim.AdamW(separate, fused=True)
    ours = AdamWWithFoldedClipping(folded, fused=True)
    grads = [torch.randn_like(p) for p in separate]
    give_gradients(separate, grads)
    give_gradients(folded, grads)
    with OpNames() as plain:
        torch.nn.utils.clip_grad_norm_(separate, 1.0)
        reference.step()
    with OpNames() as fold:
        ours.clip_before_step(1.0)
        ours.step()
    assert "_foreach_mul_" in plain.names and "_foreach_mul_" not in fold.names
    assert fold.names.count("_fused_adamw_") == plain.names.count("_fused_adamw_") == 1


# ---------------------------------------------------------------------------------------------------------
# In the Trainer


@pytest.fixture(scope="module")
def windows(smoke_tokenizer):
    examples, _ = align_training_answers(load_squad_file(SMOKE_TRAIN_FILE)[:40])
    built, _ = build_features(examples, prepare_train_features, tokenizer=smoke_tokenizer, max_seq_length=128,
                              doc_stride=48, use_cache=False, description="test")
    return PackedWindows.from_features(built, max_length=128)


def train(method, windows, tmp_path, *flags, fold=True, steps=6):
    """(trainer, trained parameters by name) after a few steps of the smoke model, clipping hard."""
    config = parse_config("base", method, ["--smoke", "--report_to", "none", "--max_grad_norm", "0.05",
                                           "--logging_steps", "1", "--fast_cpu_dropout", "false", *flags])
    set_seed(config.seed)  # the adapters' initialisation, as common/run.py does
    model = load_model(config, model_name=str(ensure_smoke_model()))
    args = training_arguments(config, precision="fp32", output_dir=tmp_path / f"{method}-{fold}")
    args.max_steps, args.disable_tqdm = steps, True
    trainer_class = make_trainer_class()
    if not fold:
        trainer_class._may_fold_clipping = lambda self: False
    trainer = trainer_class(model=model, args=args, train_dataset=windows, data_collator=batch_collator(windows))
    trainer.train()
    return trainer, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method", ["full", "lora"])
def test_a_trainer_run_with_the_fold_matches_the_trainers_own_clipping(method, windows, tmp_path):
    folded_trainer, folded = train(method, windows, tmp_path)
    plain_trainer, plain = train(method, windows, tmp_path, fold=False)
    assert isinstance(folded_trainer.optimizer.optimizer, AdamWWithFoldedClipping)
    assert type(plain_trainer.optimizer.optimizer) is torch.optim.AdamW
    norms = [[e["grad_norm"] for e in t.state.log_history if "grad_norm" in e] for t in (folded_trainer, plain_trainer)]
    assert len(norms[0]) == 6 and min(norms[0]) > 0.05  # every step was clipped
    assert norms[0][0] == norms[1][0]  # the first step's norm, before any difference: to the bit
    assert norms[0] == pytest.approx(norms[1], rel=1e-4)
    assert folded.keys() == plain.keys()
    for name in folded:
        # The QA head's bias gets a gradient that is zero up to rounding (a softmax's gradients sum to zero over
        # the positions), which Adam scales up to a full-size step either way: its path is rounding noise in
        # both runs; they differ by at most both runs' six steps of the learning rate (~2e-4) each.
        noise = name.endswith("bias") and "qa_outputs" in name
        torch.testing.assert_close(folded[name], plain[name], rtol=1e-4, atol=2 * 6 * 2.5e-4 if noise else 1e-6, msg=name)


def test_the_trainer_keeps_its_own_clipping_where_the_fold_does_not_apply(windows, tmp_path):
    trainer, _ = train("lora", windows, tmp_path, "--optim", "adamw_torch", steps=1)  # not fused: nothing to fold into
    assert type(trainer.optimizer.optimizer) is torch.optim.AdamW
    config = parse_config("base", "lora", ["--smoke", "--report_to", "none"])
    args = training_arguments(config, precision="fp32", output_dir=tmp_path / "fp16")
    trainer = make_trainer_class()(model=load_model(config, model_name=str(ensure_smoke_model())), args=args,
                                   train_dataset=windows, data_collator=batch_collator(windows))
    trainer.args.fp16 = True  # fp16's loss scaler owns the fused step's grad_scale
    assert not trainer._may_fold_clipping()
    trainer.args.fp16 = False
    assert trainer._may_fold_clipping()
