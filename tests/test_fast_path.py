"""Each piece of the fast path computes what the slow path computes."""
import torch
import pytest

from common.data import SMOKE_TRAIN_FILE, align_training_answers, load_squad_file
from common.feature_cache import build_features, feature_cache_key
from common.model import ensure_smoke_model
from common.preprocess import MODEL_INPUTS, prepare_train_features, prepare_validation_features
from common.trainer import collate_without_length, qa_loss


@pytest.fixture(scope="module")
def examples():
    aligned, _ = align_training_answers(load_squad_file(SMOKE_TRAIN_FILE)[:24])
    return aligned


def loss_of(batch, attn_implementation):
    from transformers import AutoModelForQuestionAnswering

    model = AutoModelForQuestionAnswering.from_pretrained(ensure_smoke_model(), attn_implementation=attn_implementation)
    model.eval()  # no dropout: the two paddings must give the same numbers
    labels = {k: batch[k] for k in ("start_positions", "end_positions")}
    with torch.no_grad():
        out = model(**{k: v for k, v in batch.items() if k not in labels})
    return qa_loss(start_logits=out.start_logits, end_logits=out.end_logits, attention_mask=batch["attention_mask"],
                   **labels).item()


def batch_of(features, tokenizer):
    columns = [*MODEL_INPUTS, "start_positions", "end_positions", "length"]
    rows = [{k: features[k][i] for k in columns} for i in range(len(features["input_ids"]))]
    return collate_without_length(tokenizer, pad_to_multiple_of=None)(rows)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_dynamic_padding_gives_the_same_loss_as_padding_to_max_length(examples, smoke_tokenizer, attn_implementation):
    columns = {k: [e[k] for e in examples] for k in examples[0]}
    kwargs = dict(tokenizer=smoke_tokenizer, max_seq_length=192, doc_stride=48)  # longest window here: ~180
    dynamic = batch_of(prepare_train_features(columns, **kwargs), smoke_tokenizer)
    padded = batch_of(prepare_train_features(columns, pad_to_max_length=True, **kwargs), smoke_tokenizer)
    assert padded["input_ids"].shape[1] == 192 and dynamic["input_ids"].shape[1] < 192  # padding really differs
    assert loss_of(dynamic, attn_implementation) == pytest.approx(loss_of(padded, attn_implementation), abs=1e-5)


def test_masked_loss_equals_bert_loss_without_padding(examples, smoke_tokenizer):
    """With no padding in the batch, the masked loss is exactly BertForQuestionAnswering's own loss."""
    from transformers import AutoModelForQuestionAnswering

    one = {k: [examples[0][k]] for k in examples[0]}
    batch = batch_of(prepare_train_features(one, tokenizer=smoke_tokenizer, max_seq_length=192, doc_stride=48),
                     smoke_tokenizer)
    model = AutoModelForQuestionAnswering.from_pretrained(ensure_smoke_model()).eval()
    with torch.no_grad():
        assert model(**batch).loss.item() == pytest.approx(loss_of(batch, "eager"), abs=1e-6)


def test_sdpa_and_eager_attention_agree(examples, smoke_tokenizer):
    columns = {k: [e[k] for e in examples] for k in examples[0]}
    batch = batch_of(prepare_train_features(columns, tokenizer=smoke_tokenizer, max_seq_length=128, doc_stride=48),
                     smoke_tokenizer)
    assert loss_of(batch, "sdpa") == pytest.approx(loss_of(batch, "eager"), abs=1e-5)


def test_feature_cache_hits_only_for_identical_settings(examples, smoke_tokenizer):
    from transformers import BertTokenizerFast

    from common.model import SMOKE_VOCAB

    # Same vocabulary, other normalisation (lower-casing): a different tokenizer, whose windows must not be reused.
    other_tokenizer = BertTokenizerFast(vocab=str(SMOKE_VOCAB), do_lower_case=True)
    kwargs = dict(max_seq_length=128, doc_stride=48, description="test")
    first, hit = build_features(examples, prepare_validation_features, tokenizer=smoke_tokenizer, **kwargs)
    assert not hit
    again, hit = build_features(examples, prepare_validation_features, tokenizer=smoke_tokenizer, **kwargs)
    assert hit and again["input_ids"] == first["input_ids"] and again["offset_mapping"] == first["offset_mapping"]
    # Using the tokenizer on other data (which leaves truncation state behind) does not change its identity.
    smoke_tokenizer("x", "y", truncation="only_second", max_length=64, stride=8, return_overflowing_tokens=True)
    assert build_features(examples, prepare_validation_features, tokenizer=smoke_tokenizer, **kwargs)[1]

    base = dict(examples=examples, tokenizer=smoke_tokenizer, prepare=prepare_validation_features,
                max_seq_length=128, doc_stride=48, max_query_length=64, pad_to_max_length=False)
    key = feature_cache_key(**base)
    for change in ({"max_seq_length": 192}, {"doc_stride": 32}, {"max_query_length": 32}, {"pad_to_max_length": True},
                   {"prepare": prepare_train_features}, {"tokenizer": other_tokenizer},
                   {"examples": examples[:-1]}):
        assert feature_cache_key(**{**base, **change}) != key, change
    other, hit = build_features(examples, prepare_validation_features, tokenizer=other_tokenizer, **kwargs)
    assert not hit and other["input_ids"] != first["input_ids"]


def test_cache_can_be_turned_off(examples, smoke_tokenizer):
    kwargs = dict(tokenizer=smoke_tokenizer, max_seq_length=100, doc_stride=40, max_query_length=32, description="test")
    assert not build_features(examples, prepare_validation_features, use_cache=False, **kwargs)[1]
    assert not build_features(examples, prepare_validation_features, use_cache=False, **kwargs)[1]
