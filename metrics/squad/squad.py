"""The repository's SQuAD v1.1 metric as an `evaluate` module, loadable offline from this folder:

    import evaluate
    squad = evaluate.load("metrics/squad")                     # official SQuAD v1.1 (comparable with the paper)
    squad_pt = evaluate.load("metrics/squad", "portuguese")     # Portuguese articles, Unicode punctuation
    squad.compute(predictions=[{"id": "1", "prediction_text": "Lisboa"}],
                  references=[{"id": "1", "answers": {"text": ["Lisboa"], "answer_start": [0]}}])
    # {'exact_match': 100.0, 'f1': 100.0}

The same call as `evaluate.load("squad")`, which fetches its code from the Hub at run time and so fails offline.
The scores come from `common/squad_metric.py`, the code the training runs call: `squad_metric.py` beside this
script is a symbolic link to it, and `evaluate` copies both files into its module cache (`from .squad_metric`
is how it learns to copy the second one). The copy is named by a hash of both files' contents, so a change to
`common/squad_metric.py` gives a fresh copy rather than a stale one.
"""
import datasets
import evaluate

from .squad_metric import compute, compute_portuguese

# config_name -> scoring function; evaluate names the configuration "default" when none is given.
SCORERS = {"default": compute, "official": compute, "portuguese": compute_portuguese}

_DESCRIPTION = """SQuAD v1.1 exact match and F1 (percent), as the official v1.1 evaluation script computes them:
lower-case, drop ASCII punctuation, drop the English articles a/an/the, collapse white space; the best score over
the gold answers of each question, averaged over the questions. Configuration "portuguese" drops the Portuguese
articles (o, a, os, as, um, uma, uns, umas) and all Unicode punctuation instead: not comparable with published
SQuAD scores."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: list of {"id": str, "prediction_text": str}.
    references: list of {"id": str, "answers": {"text": [str, ...], "answer_start": [int, ...]}}.
Returns:
    {"exact_match": float, "f1": float}, both in percent. A question without a prediction scores 0; a prediction
    for an id that is not among the references is ignored.
"""

_CITATION = """@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing",
    year = "2016",
    pages = "2383--2392",
}"""


class Squad(evaluate.Metric):
    def _info(self):
        if self.config_name not in SCORERS:
            raise ValueError(f"configuration {self.config_name!r}: choose one of {sorted(SCORERS)}")
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            # The features of evaluate's own squad metric, so the same inputs pass the same checks.
            features=datasets.Features({
                "predictions": {"id": datasets.Value("string"), "prediction_text": datasets.Value("string")},
                "references": {
                    "id": datasets.Value("string"),
                    "answers": datasets.features.Sequence(
                        {"text": datasets.Value("string"), "answer_start": datasets.Value("int32")}),
                },
            }),
            codebase_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions, references):
        return SCORERS[self.config_name](predictions=predictions, references=references)
