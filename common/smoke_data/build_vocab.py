"""Build ``vocab.txt``: a tiny cased WordPiece vocabulary for the smoke data.

Why
---
The offline smoke tests and the "tiny model learns" test need a BERT-style
tokenizer without downloading the real BERTimbau vocabulary.  This vocabulary
is learned only from the texts of ``train.json`` and ``validation.json`` in
this folder (all contexts and questions), so it covers them with no ``[UNK]``
tokens while staying small (2000 entries).  Special tokens come first, in the
order ``[PAD] [UNK] [CLS] [SEP] [MASK]`` (ids 0-4); the file has one token per
line in id order, as ``transformers.BertTokenizerFast`` expects.

How
---
The reference recipe is the ``tokenizers`` WordPiece trainer::

    BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True,
                           strip_accents=False, lowercase=False)
    .train_from_iterator(texts, vocab_size=2000, min_frequency=1,
                         special_tokens=[...], limit_alphabet=1000,
                         wordpieces_prefix="##")

That trainer is NOT deterministic (tokenizers 0.23): on a corpus this small
many merge candidates have equal counts, and the Rust trainer breaks ties by
token ids that it assigns in hash-map iteration order, which is randomised per
process.  Two runs on the same sorted input gave vocabularies differing in
dozens of tokens.  So, by default, this script runs the same algorithm in
plain Python with a fixed tie-break:

* text normalisation and word splitting use the library's own
  ``BertNormalizer`` and ``BertPreTokenizer`` with the settings above;
* the alphabet is every character seen (at most ``limit_alphabet``, most
  frequent first); non-initial characters of a word get the ``##`` prefix;
* BPE-style merges: repeatedly merge the adjacent pair with the highest
  corpus count (ties: lexicographically smallest pair), new token = left +
  right without its ``##``, until the vocabulary has ``vocab_size`` entries or
  the best count drops below ``min_frequency``.

This gives a byte-identical ``vocab.txt`` on every run.  ``--hf-trainer`` runs
the library trainer instead (same settings, non-deterministic output).

Regenerate (after ``build_smoke_data.py``)::

    python common/smoke_data/build_vocab.py

Released under the MIT License, like the rest of this repository.
"""

import argparse
import json
import os
from collections import Counter

from tokenizers.normalizers import BertNormalizer
from tokenizers.pre_tokenizers import BertPreTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
VOCAB_SIZE = 2000
MIN_FREQUENCY = 1
LIMIT_ALPHABET = 1000
PREFIX = "##"


def load_texts():
    """All contexts and questions of both splits, deduplicated and sorted."""
    texts = set()
    for name in ("train.json", "validation.json"):
        with open(os.path.join(HERE, name), encoding="utf-8") as f:
            data = json.load(f)["data"]
        for article in data:
            for paragraph in article["paragraphs"]:
                texts.add(paragraph["context"])
                for qa in paragraph["qas"]:
                    texts.add(qa["question"])
    return sorted(texts)


def train_deterministic(texts):
    normalizer = BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                strip_accents=False, lowercase=False)
    pre_tokenizer = BertPreTokenizer()
    word_counts = Counter()
    for text in texts:
        for word, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)):
            word_counts[word] += 1

    char_counts = Counter()
    for word, count in word_counts.items():
        for ch in word:
            char_counts[ch] += count
    alphabet = sorted(char_counts, key=lambda ch: (-char_counts[ch], ch))[:LIMIT_ALPHABET]
    alphabet_set = set(alphabet)

    vocab = list(SPECIAL_TOKENS) + sorted(alphabet)
    known = set(vocab)

    # Split every word into characters, "##"-prefixing non-initial ones.
    words = []  # list of [symbols, count], in sorted word order
    for word in sorted(word_counts):
        symbols = []
        for i, ch in enumerate(word):
            if ch not in alphabet_set:
                continue
            symbols.append(ch if i == 0 else PREFIX + ch)
        words.append([symbols, word_counts[word]])
    for symbol in sorted({s for symbols, _ in words for s in symbols} - known):
        vocab.append(symbol)
        known.add(symbol)

    def pair_counts():
        counts = Counter()
        for symbols, count in words:
            for pair in zip(symbols, symbols[1:]):
                counts[pair] += count
        return counts

    counts = pair_counts()
    while len(vocab) < VOCAB_SIZE and counts:
        best = min(counts, key=lambda pair: (-counts[pair], pair))
        if counts[best] < MIN_FREQUENCY:
            break
        left, right = best
        new = left + (right[len(PREFIX):] if right.startswith(PREFIX) else right)
        if new not in known:
            vocab.append(new)
            known.add(new)
        for entry in words:
            symbols = entry[0]
            if len(symbols) < 2:
                continue
            merged, i = [], 0
            while i < len(symbols):
                if i + 1 < len(symbols) and symbols[i] == left and symbols[i + 1] == right:
                    merged.append(new)
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            entry[0] = merged
        counts = pair_counts()
    return vocab


def train_hf(texts):
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(clean_text=True, handle_chinese_chars=True,
                                       strip_accents=False, lowercase=False)
    tokenizer.train_from_iterator(texts, vocab_size=VOCAB_SIZE, min_frequency=MIN_FREQUENCY,
                                  special_tokens=SPECIAL_TOKENS, limit_alphabet=LIMIT_ALPHABET,
                                  wordpieces_prefix=PREFIX, show_progress=False)
    ids = tokenizer.get_vocab()
    return sorted(ids, key=ids.get)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hf-trainer", action="store_true",
                        help="use the (non-deterministic) tokenizers WordPiece trainer")
    parser.add_argument("--output", default=os.path.join(HERE, "vocab.txt"))
    args = parser.parse_args()

    texts = load_texts()
    vocab = train_hf(texts) if args.hf_trainer else train_deterministic(texts)
    assert vocab[:5] == SPECIAL_TOKENS, vocab[:5]
    assert len(vocab) == len(set(vocab))
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        for token in vocab:
            f.write(token + "\n")
    print(f"wrote {len(vocab)} tokens to {args.output}")


if __name__ == "__main__":
    main()
