"""Config layers: defaults -> model preset -> method -> smoke -> command line; validation names the flag."""
import pytest

from common.config import REPO_ROOT, ConfigError, parse_config


def test_paper_defaults_per_size_and_method():
    full = parse_config("base", "full", [])
    assert (full.model_name, full.batch_size, full.learning_rate) == ("neuralmind/bert-base-portuguese-cased", 16, 4.25e-5)
    assert (full.num_epochs, full.weight_decay, full.max_grad_norm, full.max_seq_length, full.doc_stride) == (2, 0.01, 1.0, 384, 128)
    qdora = parse_config("large", "qdora", [])
    assert (qdora.model_name, qdora.batch_size, qdora.learning_rate) == ("neuralmind/bert-large-portuguese-cased", 8, 2e-4)
    assert qdora.use_peft and qdora.use_dora and qdora.quantize_4bit
    assert (qdora.lora_r, qdora.lora_alpha, qdora.lora_dropout) == (16, 32, 0.1)
    assert qdora.target_modules == ["query", "key", "value", "attention.output.dense"]


def test_command_line_wins_and_smoke_layers_in_between():
    config = parse_config("base", "lora", ["--smoke", "--learning_rate", "1e-3", "--target_modules", "query", "value"])
    assert config.smoke and config.model_name == "" and config.max_seq_length == 128
    assert config.learning_rate == 1e-3 and config.target_modules == ["query", "value"]
    assert config.resolved_results_file() == REPO_ROOT / "results" / "smoke_runs.csv"
    assert parse_config("base", "lora", []).resolved_results_file() == REPO_ROOT / "results" / "runs.csv"


@pytest.mark.parametrize("argv, message", [
    (["--learning_rate", "-1"], "--learning_rate -1.0"),
    (["--doc_stride", "384"], "--doc_stride 384"),
    (["--batch_size", "0"], "--batch_size 0"),
    (["--train_file", "x.json"], "--train_file and --validation_file"),
    (["--method", "adapterfusion"], "--method 'adapterfusion'"),
    (["--precision", "int8"], "--precision 'int8'"),
    (["--bucket_width", "12"], "--bucket_width 12: must be a multiple of 8"),
    (["--bucket_width", "0"], "--bucket_width 0: must be a multiple of 8"),
])
def test_bad_values_are_refused_by_name(argv, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_config("base", "lora", argv)


def test_docs_name_every_flag():
    """Every flag of the config is documented, in the README or one of the docs/ pages it links to."""
    import dataclasses

    from common.config import RunConfig

    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    text = "\n".join(page.read_text(encoding="utf-8") for page in pages)
    assert [f.name for f in dataclasses.fields(RunConfig) if f"--{f.name}" not in text] == []


def test_readme_links_every_docs_page_and_every_link_resolves():
    import re

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    linked = set(re.findall(r"\]\((docs/[^)#]+)", readme))
    assert linked == {f"docs/{p.name}" for p in (REPO_ROOT / "docs").glob("*.md")}
    for page in [REPO_ROOT / "README.md", *(REPO_ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.parametrize("argv, line", [
    (["--learning-rate", "1e-3"], "error: --learning-rate: did you mean --learning_rate?"),
    (["--lerning_rate", "1e-3"], "error: --lerning_rate: did you mean --learning_rate?"),
    (["--num-epochs=3", "--smoke"], "error: --num-epochs: did you mean --num_epochs?"),
    (["--batch-size", "4", "--lora-r", "8"],
     "error: --batch-size: did you mean --batch_size?; --lora-r: did you mean --lora_r?"),
    (["--frobnicate"], "error: --frobnicate: no such flag"),
    (["--learning_rate", "fast"], "error: argument --learning_rate: invalid float value: 'fast'"),
])
def test_bad_command_line_gets_one_line_with_a_suggestion(argv, line, capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_config("base", "lora", argv)
    assert stopped.value.code == 2
    stderr = capsys.readouterr().err
    assert stderr == f"{line} (--help lists every flag)\n"  # one line, no usage block


def test_abbreviated_flags_still_work():
    assert parse_config("base", "lora", ["--learning", "1e-3"]).learning_rate == 1e-3  # argparse's prefixes


def test_readme_setup_block_installs_then_tests_and_ci_runs_the_same_test_command():
    import re

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Set up and test\n.*?```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert len(block) == 3 and "venv" in block[0]  # a venv line, one install line, one test line
    install, test = block[1], block[2]
    # CPU torch before requirements.txt, so a machine without a GPU does not pull the CUDA build.
    assert install.index("download.pytorch.org/whl/cpu") < install.index("pip install -r requirements.txt")
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert test.startswith("python -m pytest") and test in ci
