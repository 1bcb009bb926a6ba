"""BERTimbau-Large: answer questions with a trained run (full model, LoRA/DoRA adapter, QLoRA/QDoRA adapter or merged/).

    python bertimbau_large/main_predict.py --model_dir outputs/<run> --question "Qual é a capital?" --context "Lisboa é a capital de Portugal."
    python bertimbau_large/main_predict.py --model_dir outputs/<run> --input dev.json --output predictions.json
    python bertimbau_large/main_predict.py --model_dir outputs/<run> --input questions.jsonl --output answers.jsonl

One question: prints the answer and its score (probability among the candidate spans). --input: SQuAD JSON or
JSON Lines of {"id", "question", "context"}; writes the predictions (.json: {id: answer}, the official SQuAD
format; .jsonl: {"id", "answer", "score"} lines) and, when every question has answers, prints F1 and EM, equal to
the run's results row for its own validation set. The base model, method and windowing come from the run's
run_config.json (QLoRA/QDoRA re-quantize the base to 4-bit NF4). All flags: --help.
"""
import sys
from pathlib import Path

# Lets both `python bertimbau_large/main_predict.py` and `cd bertimbau_large && python main_predict.py` import common/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.predict import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(model_size="large", description=__doc__))
