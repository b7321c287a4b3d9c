"""report, ensemble and export on tiny trained runs, each checked against an independent computation:
transformers / sentence-transformers loading the exported folders, probabilities averaged by hand, the
confusion matrix and Quora precision / recall counted from the prediction files."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minbert.cli import main
from minbert.schema import load_config
from minbert.data.readers import read_examples
from minbert.runs import load_run
from minbert.tasks import COURSE_TASKS
from minbert.training.run import train


def tiny_run(path: Path, backbone: Path, data: Path, *extra: str) -> Path:
    cfg = load_config(None, [f"model.backbone={backbone}", "train.epochs=1", "train.schedule.until=fixed_steps",
                             "train.schedule.steps_per_epoch=3", "train.batch_size={sst: 8, para: 8, sts: 8}",
                             "train.combine.log_cosine_every=1", *extra])
    train(cfg, path, str(data))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_backbone, small_data_dir) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("results")
    a = tiny_run(root / "a", tiny_backbone, small_data_dir)
    b = tiny_run(root / "b", tiny_backbone, small_data_dir, "train.seed=5", "model.pair_encoding=siamese",
                 "model.pooling=cls+mean")
    return a, b


def predictions(path: Path) -> dict[str, str]:
    return dict(tuple(p.strip() for p in row.split(" , ")) for row in path.read_text().splitlines()[1:])


def gold(data: Path, task: str) -> dict[str, float]:
    t = COURSE_TASKS[task]
    examples, _ = read_examples(t.path(data, "dev"), t.text_columns, t.label_column, t.parse_label)
    return {e.id: e.label for e in examples}


def test_report_writes_figures_and_tables_that_match_the_predictions(runs, small_data_dir):
    run = runs[0]
    assert main(["report", str(run), "--data-dir", str(small_data_dir)]) == 0
    folder = run / "report"
    for png in ("confusion_sst.png", "confusion_para.png", "sts_scatter.png", "sts_residuals.png", "curves.png",
                "grad_cosine.png"):
        assert (folder / png).stat().st_size > 1000
    text = (folder / "REPORT.md").read_text()
    best = json.loads((run / "best_metrics.json").read_text())
    for task in ("sst", "para", "sts", "overall"):
        assert f"{best[task]:.4f}" in text
    pred, g = predictions(run / "predictions" / "para-dev-output.csv"), gold(small_data_dir, "para")
    tp = sum(1 for i in g if pred[i] == "1" and g[i] == 1)
    precision, recall = tp / max(1, sum(p == "1" for p in pred.values())), tp / max(1, sum(v == 1 for v in g.values()))
    assert f"| {precision:.4f} | {recall:.4f} |" in text
    assert text.count("### ") == 3 and "| id | text | gold | predicted | confidence |" in text


def test_ensemble_of_a_run_with_itself_is_the_run(runs, tmp_path, small_data_dir):
    a, _ = runs
    assert main(["ensemble", str(a), str(a), "--out", str(tmp_path), "--data-dir", str(small_data_dir)]) == 0
    metrics = json.loads((tmp_path / "ensemble_metrics.json").read_text())["dev"]
    best = json.loads((a / "best_metrics.json").read_text())
    for task in ("sst", "para", "sts", "overall"):
        assert metrics[task] == pytest.approx(best[task], abs=1e-6)
    for task in ("sst", "para"):
        for split in ("dev", "test"):
            assert predictions(tmp_path / "predictions" / f"{task}-{split}-output.csv") == \
                predictions(a / "predictions" / f"{task}-{split}-output.csv")


def test_ensemble_averages_probabilities(runs, tmp_path, small_data_dir):
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path), "--data-dir", str(small_data_dir)]) == 0
    t = COURSE_TASKS["sst"]
    examples, _ = read_examples(t.path(small_data_dir, "dev"), t.text_columns, t.label_column, t.parse_label)
    probs = 0
    for run in runs:  # each run's model applied by hand, one sentence at a time
        _, model, tok = load_run(run)
        with torch.no_grad():
            probs = probs + torch.cat([torch.softmax(model("sst", [tok([e.texts[0]])]), -1) for e in examples])
    want = probs.argmax(-1).tolist()
    got = predictions(tmp_path / "predictions" / "sst-dev-output.csv")
    assert [int(got[e.id]) for e in examples] == want
    metrics = json.loads((tmp_path / "ensemble_metrics.json").read_text())["dev"]
    assert metrics["sst"] == pytest.approx(np.mean([w == e.label for w, e in zip(want, examples)]))


def test_export_hf_loads_in_transformers(runs, tmp_path):
    transformers = pytest.importorskip("transformers")
    a, _ = runs
    assert main(["export", str(a), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    _, model, tok = load_run(a)
    hf = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    sentences = ["A man plays a guitar.", "Cats sleep all day long."]
    x = tok(sentences)
    assert hf_tok(sentences, padding=True, return_tensors="pt")["input_ids"].tolist() == x["input_ids"].tolist()
    with torch.no_grad():
        want = model.encoder(x["input_ids"], x["attention_mask"], x["token_type_ids"]).last_hidden_state
        got = hf(input_ids=x["input_ids"], attention_mask=x["attention_mask"],
                 token_type_ids=x["token_type_ids"]).last_hidden_state
    assert torch.allclose(got, want, atol=1e-5)
    from minbert.tools.export import load_exported
    again = load_exported(tmp_path / "hf")
    with torch.no_grad():
        assert torch.allclose(again("sst", [x]), model("sst", [x]), atol=1e-6)


@pytest.mark.parametrize("which", [0, 1], ids=["mean", "cls+mean"])
def test_export_sentence_transformers_embeds_as_the_heads_pool(runs, tmp_path, which):
    st = pytest.importorskip("sentence_transformers")
    run = runs[which]
    assert main(["export", str(run), "--format", "sentence-transformers", "--out", str(tmp_path / "st")]) == 0
    _, model, tok = load_run(run)
    sentences = ["A man plays a guitar.", "Cats sleep all day long.", "Hi"]
    emb = st.SentenceTransformer(str(tmp_path / "st"), device="cpu").encode(sentences, convert_to_tensor=True)
    with torch.no_grad():
        want = torch.stack([model.head("sts").sentence_vector(model.encoder, tok([s]))[0] for s in sentences])
    assert emb.shape == want.shape and torch.allclose(emb.cpu(), want, atol=1e-4)


def test_export_refuses_a_folder_with_files_it_would_replace_unless_overwrite(runs, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "config.json").write_text('{"mine": true}')
    (out / "vocab.txt").write_text("my vocabulary\n")
    (out / "notes.txt").write_text("not minbert's\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert main(["export", str(runs[0]), "--format", "hf", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out} has config.json, vocab.txt, which export would replace" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # not even a lock file

    # --overwrite replaces them; an earlier sentence-transformers export's own files do not outlive an hf one
    assert main(["export", str(runs[0]), "--format", "sentence-transformers", "--out", str(out), "--overwrite"]) == 0
    assert (out / "modules.json").is_file() and json.loads((out / "config.json").read_text()).get("mine") is None
    assert main(["export", str(runs[0]), "--format", "hf", "--out", str(out)]) == 2  # an earlier export is refused too
    assert main(["export", str(runs[0]), "--format", "hf", "--out", str(out), "--overwrite"]) == 0
    assert not (out / "modules.json").exists() and not (out / "1_Pooling").exists()
    assert (out / "notes.txt").read_text() == "not minbert's\n"


def test_bad_inputs_are_one_line_errors(runs, tmp_path, capsys):
    assert main(["ensemble", str(runs[0]), "--out", str(tmp_path)]) == 2
    assert "at least two run directories" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_dev_loss_per_epoch_is_the_loss_on_the_dev_rows(runs, small_data_dir):
    """metrics.jsonl's dev loss (1 epoch: the best model) against cross-entropy computed row by row."""
    run = runs[0]
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    _, model, tok = load_run(run)
    t = COURSE_TASKS["sst"]
    examples, _ = read_examples(t.path(small_data_dir, "dev"), t.text_columns, t.label_column, t.parse_label)
    with torch.no_grad():
        losses = [torch.nn.functional.cross_entropy(model("sst", [tok([e.texts[0]])]), torch.tensor([e.label]))
                  for e in examples]
    assert record["dev_loss"]["sst"] == pytest.approx(float(torch.stack(losses).mean()), rel=1e-4)


def test_loading_a_run_leaves_the_callers_random_stream_where_it_was(runs):
    """Building the model draws init weights; a training run that loads a teacher mid-way must draw the same
    dropout masks after it as without it."""
    torch.manual_seed(5)
    want = torch.rand(4)
    torch.manual_seed(5)
    load_run(runs[0])
    assert torch.equal(torch.rand(4), want)
