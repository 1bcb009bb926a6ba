"""Loading, validating and repairing SQuAD-format question-answering data.

Every loader returns a list of flat examples in the Hugging Face `squad` layout:
``{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``.
Errors name the file and the record, so a bad line in a 90k-question file can be found and fixed.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

# The shipped smoke data (written for this project, see common/smoke_data/build_smoke_data.py).
SMOKE_DATA_DIR = Path(__file__).resolve().parent / "smoke_data"
SMOKE_TRAIN_FILE = SMOKE_DATA_DIR / "train.json"
SMOKE_VALIDATION_FILE = SMOKE_DATA_DIR / "validation.json"

# The public sample of the Hub's Google-Translate Portuguese SQuAD (github.com/nunorc/squad-v1.1-pt,
# docs/sample-v1.1-pt.json: 3,286 questions) is the first ten articles of its training set, University_of_Notre_Dame
# to Spectre_(2015_film). The CPU benchmark and the tests measure on those articles.
PUBLIC_SAMPLE_DATASET = "nunorc/squad_v1_pt"
PUBLIC_SAMPLE_ARTICLES = 10


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, the record and what to do."""


@dataclass
class AlignmentStats:
    """What happened to the training answers (translated data sets misplace many of them)."""

    kept: int = 0  # text found at its answer_start
    relocated: int = 0  # text found verbatim elsewhere in the context
    relocated_ignoring_case: int = 0  # found only with different letter case
    dropped: int = 0  # not in the context at all: the question cannot be a training target
    trimmed: int = 0  # of the answers used, those whose text had leading or trailing white space, cut off

    def summary(self) -> str:
        total = self.kept + self.relocated + self.relocated_ignoring_case + self.dropped
        return (
            f"{total} training answers: {self.kept} kept, {self.relocated} re-located, "
            f"{self.relocated_ignoring_case} re-located ignoring case, {self.dropped} dropped (not in context); "
            f"{self.trimmed} had white space around their text, trimmed"
        )


# ----------------------------------------------------------------------------------------------------------
# Reading files


def read_json_records(path: Path) -> Any:
    """Parse a .json file or a .jsonl file (one JSON object per line)."""
    if not path.exists():
        raise DataError(f"{path}: file not found; check the path")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected a SQuAD JSON or JSONL file")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror}); check the file's permissions") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}); re-save the file as UTF-8") from exc
    if not text.strip():
        raise DataError(f"{path}: file is empty; expected SQuAD v1.1 JSON or JSON Lines")
    if path.suffix.lower() == ".jsonl":
        records = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{line_no}: not valid JSON ({exc.msg}); each line must be one JSON object") from exc
            except RecursionError as exc:
                raise DataError(f"{path}:{line_no}: JSON nested too deeply to be SQuAD data") from exc
        return records
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (one object per line? name the file .jsonl)" if exc.msg == "Extra data" else ""
        raise DataError(f"{path}: not valid JSON at line {exc.lineno} column {exc.colno} ({exc.msg}){hint}") from exc
    except RecursionError as exc:  # thousands of nested brackets: json.loads recurses once per level
        raise DataError(f"{path}: JSON nested too deeply to be SQuAD data") from exc


def _require(record: dict, key: str, kind: type | tuple, where: str) -> Any:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if key not in record:
        raise DataError(f"{where}: missing field {key!r} (docs/data.md shows the SQuAD v1.1 layout)")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise DataError(f"{where}: field {key!r} must be {names}, got {type(value).__name__}")
    return value


def _answers_from_squad_list(answers: list, where: str) -> dict:
    texts, starts = [], []
    for i, answer in enumerate(answers):
        texts.append(_require(answer, "text", str, f"{where} answer {i}"))
        starts.append(_require(answer, "answer_start", int, f"{where} answer {i}"))
    return {"text": texts, "answer_start": starts}


def _answers_from_columns(answers: dict, where: str) -> dict:
    texts = _require(answers, "text", list, f"{where} answers")
    starts = _require(answers, "answer_start", list, f"{where} answers")
    if len(texts) != len(starts):
        raise DataError(f"{where}: answers have {len(texts)} texts but {len(starts)} answer_start values")
    for value in texts:
        if not isinstance(value, str):
            raise DataError(f"{where}: answer text must be str, got {type(value).__name__}")
    for value in starts:
        if not isinstance(value, int) or isinstance(value, bool):
            raise DataError(f"{where}: answer_start must be int, got {type(value).__name__}")
    return {"text": list(texts), "answer_start": list(starts)}


def _flat_example(*, qid: str, title: str, context: str, qa: dict, where: str) -> dict:
    question = _require(qa, "question", str, where)
    if qa.get("is_impossible") is True:
        raise DataError(
            f"{where}: 'is_impossible' is true: this is SQuAD v2 data; this repository trains and evaluates "
            "SQuAD v1.1 (every question answerable). Remove unanswerable questions or use a v1.1 file"
        )
    answers_field = qa.get("answers")
    if isinstance(answers_field, list):
        answers = _answers_from_squad_list(answers_field, where)
    elif isinstance(answers_field, dict):
        answers = _answers_from_columns(answers_field, where)
    elif answers_field is None:
        raise DataError(f"{where}: missing field 'answers'")
    else:
        raise DataError(f"{where}: field 'answers' must be a list or an object, got {type(answers_field).__name__}")
    return {"id": qid, "title": title, "context": context, "question": question, "answers": answers}


def _examples_from_nested(data: list, path: Path) -> list[dict]:
    examples = []
    for a, article in enumerate(data):
        where_article = f"{path}: data[{a}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        paragraphs = _require(article, "paragraphs", list, where_article)
        for p, paragraph in enumerate(paragraphs):
            where_paragraph = f"{where_article}.paragraphs[{p}]"
            context = _require(paragraph, "context", str, where_paragraph)
            qas = _require(paragraph, "qas", list, where_paragraph)
            for q, qa in enumerate(qas):
                qid = _require(qa, "id", (str, int), f"{where_paragraph}.qas[{q}]")
                where = f"{path}: question id {qid!r} (data[{a}].paragraphs[{p}].qas[{q}])"
                examples.append(_flat_example(qid=str(qid), title=str(title), context=context, qa=qa, where=where))
    return examples


def _examples_from_flat(records: list, path: Path) -> list[dict]:
    examples = []
    for r, record in enumerate(records):
        qid = _require(record, "id", (str, int), f"{path}: record {r}")
        where = f"{path}: question id {qid!r} (record {r})"
        context = _require(record, "context", str, where)
        title = record.get("title", "") or ""
        examples.append(_flat_example(qid=str(qid), title=str(title), context=context, qa=record, where=where))
    return examples


def load_squad_file(path: str | Path) -> list[dict]:
    """Load nested SQuAD v1.1 JSON, a flat JSON list (or {"data": [flat records]}) or JSONL."""
    path = Path(path)
    content = read_json_records(path)
    if isinstance(content, dict):
        if "data" not in content:
            raise DataError(f"{path}: a JSON object must have a 'data' list (SQuAD format); found keys {sorted(content)[:5]}")
        content = content["data"]
    elif not isinstance(content, list):
        raise DataError(
            f"{path}: expected a SQuAD JSON object with a 'data' list, or a list of question records; got "
            f"{type(content).__name__}"
        )
    if not isinstance(content, list):
        raise DataError(f"{path}: 'data' must be a list, got {type(content).__name__}")
    if not content:
        raise DataError(f"{path}: contains no articles or questions; a training or validation set needs at least one")
    nested = isinstance(content[0], dict) and "paragraphs" in content[0]
    examples = _examples_from_nested(content, path) if nested else _examples_from_flat(content, path)
    return check_examples(examples, source=str(path))


def check_examples(examples: list[dict], *, source: str) -> list[dict]:
    """Check what the structure cannot: unique ids, non-empty text, answer offsets inside the context."""
    if not examples:
        raise DataError(f"{source}: contains no questions; a training or validation set needs at least one")
    seen: set[str] = set()
    for example in examples:
        where = f"{source}: question id {example['id']!r}"
        if example["id"] in seen:
            raise DataError(f"{where}: duplicate id; every question needs its own id")
        seen.add(example["id"])
        if not example["question"].strip():
            raise DataError(f"{where}: empty question; fill it in or remove the question")
        if not example["context"].strip():
            raise DataError(f"{where}: empty context; fill it in or remove the paragraph")
        if not example["answers"]["text"]:
            raise DataError(
                f"{where}: no answers: SQuAD v2-style unanswerable questions are not supported; this repository "
                "trains and evaluates SQuAD v1.1"
            )
        for text, start in zip(example["answers"]["text"], example["answers"]["answer_start"]):
            if not text.strip():
                raise DataError(f"{where}: empty answer text; give the answer or remove the question")
            if start < 0 or start >= len(example["context"]):
                raise DataError(
                    f"{where}: answer_start {start} is outside the context (length {len(example['context'])}); "
                    "fix answer_start or the answer text"
                )
    return examples


# ----------------------------------------------------------------------------------------------------------
# Hub data sets


def load_hub_dataset(name: str, *, revision: Optional[str] = None) -> dict[str, list[dict]]:
    """Load a Hub dataset with SQuAD columns; returns {"train": [...], "validation": [...]}.

    `nunorc/squad_v1_pt` is stored as a loading script, which `datasets` >= 4 refuses; the Hub's automatic
    parquet conversion (`refs/convert/parquet`) holds the same rows, so that is tried next.
    """
    import datasets  # imported here: file-based runs never need it

    revisions = [revision] if revision else [None, "refs/convert/parquet"]
    errors = []
    for rev in revisions:
        try:
            loaded = datasets.load_dataset(name, revision=rev)
            break
        except Exception as exc:  # network, missing repo, script refused: all mean "try the next form"
            errors.append(f"revision {rev or 'main'}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    else:
        raise DataError(
            f"could not load Hub dataset {name!r} ({'; '.join(errors)}). Offline or behind a firewall? Pass local "
            "files instead: --train_file train.json --validation_file dev.json (SQuAD v1.1 JSON), or --smoke for the "
            "shipped demo data"
        )
    splits = {}
    for split in ("train", "validation"):
        if split not in loaded:
            raise DataError(f"Hub dataset {name!r} has no {split!r} split (has {list(loaded)})")
        rows = loaded[split].to_list()
        source = f"hub:{name}[{split}]"
        for row in rows:
            for key in ("id", "context", "question", "answers"):
                if key not in row:
                    raise DataError(f"{source}: column {key!r} missing; expected SQuAD columns id, title, context, question, answers")
            row["title"] = row.get("title") or ""
            row["answers"] = {"text": list(row["answers"]["text"]), "answer_start": [int(s) for s in row["answers"]["answer_start"]]}
        splits[split] = check_examples(rows, source=source)
    return splits


def load_hub_sample() -> list[dict]:
    """The public sample's articles loaded from the Hub, as a user without the sample file gets them."""
    train = load_hub_dataset(PUBLIC_SAMPLE_DATASET)["train"]
    titles = set(list(dict.fromkeys(example["title"] for example in train))[:PUBLIC_SAMPLE_ARTICLES])
    return [example for example in train if example["title"] in titles]


# ----------------------------------------------------------------------------------------------------------
# Answer alignment


def _locate(context: str, text: str, start: int) -> tuple[Optional[int], str]:
    """Where the answer text really is: (start, how) with how in kept/relocated/relocated_ignoring_case/dropped.

    Only whole-word occurrences count, at answer_start too: "o edifício principal" recorded inside "do
    edifício principal" (62 answers of the public sample) is misplaced, and a label that starts inside a
    word cannot be expressed in tokens. Among several occurrences the one nearest answer_start is taken.
    """
    pattern = rf"(?<!\w){re.escape(text)}(?!\w)"
    if re.compile(pattern).match(context, start):  # the lookbehind sees the character before `start`
        return start, "kept"
    for flags, how in ((0, "relocated"), (re.IGNORECASE, "relocated_ignoring_case")):
        # re with IGNORECASE reports offsets in the original string (str.lower() can change lengths).
        hits = [m.start() for m in re.finditer(pattern, context, flags)]
        if hits:
            return min(hits, key=lambda h: abs(h - start)), how
    return None, "dropped"


def trim_answer(text: str, start: int) -> tuple[str, int]:
    """The answer without leading/trailing white space, its start moved past the leading part.

    A label is the tokens from the one holding the first answer character to the one holding the last; a
    white-space edge lies between tokens, so it would widen the label by a token: " A cidade" labelled ". A
    cidade", "nasceu em " labelled "nasceu em 1825".
    """
    stripped = text.lstrip()
    return stripped.rstrip(), start + len(text) - len(stripped)


def locate_answer(example: dict) -> tuple[Optional[int], str, str, bool]:
    """(start, how, text, trimmed) of the first gold answer that `_locate` finds in the context, its edges
    trimmed; (None, "dropped", "", False) when none is. The one rule for a usable answer, in training and in
    evaluation's answerable count."""
    for raw, start in zip(example["answers"]["text"], example["answers"]["answer_start"]):
        text, start = trim_answer(raw, start)
        found, how = _locate(example["context"], text, start)
        if found is not None:
            return found, how, text, text != raw
    return None, "dropped", "", False


def is_answerable(example: dict) -> bool:
    """Whether some gold answer occurs in the context as whole words (any letter case): exactly the questions
    training keeps. Others (answers translated apart from their context, or found only inside a longer word)
    have no span of whole tokens that equals an answer, so no extractive model can match them."""
    return locate_answer(example)[0] is not None


def align_training_answers(examples: Iterable[dict]) -> tuple[list[dict], AlignmentStats]:
    """Keep one answer per training question, placed where its text really is in the context.

    Translated SQuAD sets put answers that the translator moved at a wrong offset (often 0). Training on
    those would teach the model wrong spans, so they are re-located when the text occurs in the context
    (exactly, then ignoring case) and dropped otherwise. White space around an answer's text is trimmed
    first (`trim_answer`). Evaluation data is not aligned: the metric compares text, so every evaluation
    question is kept.
    """
    stats = AlignmentStats()
    aligned = []
    for example in examples:
        found, how, text, trimmed = locate_answer(example)
        setattr(stats, how, getattr(stats, how) + 1)
        if found is None:
            continue
        stats.trimmed += trimmed
        # The label is the context's own span, so decoding the labelled tokens returns it exactly.
        span = example["context"][found : found + len(text)]
        aligned.append({**example, "answers": {"text": [span], "answer_start": [found]}})
    return aligned, stats
