"""BERTimbau-Base: LoRA (rank 16, alpha 32 on query/key/value/attention output) for Portuguese SQuAD v1.1.

    python bertimbau_base/main_lora.py --learning_rate 2e-4 --num_epochs 2
    python bertimbau_base/main_lora.py --smoke          # offline demo: tiny BERT, shipped data, CPU

Writes the model (for adapters: adapter + QA head), predictions.json and run_config.json to
outputs/<run name>/, and appends one row to results/runs.csv (results/smoke_runs.csv with --smoke).
All flags: --help.
"""
import sys
from pathlib import Path

# Lets both `python bertimbau_base/main_lora.py` and `cd bertimbau_base && python main_lora.py` import common/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(model_size="base", method="lora", description=__doc__))
