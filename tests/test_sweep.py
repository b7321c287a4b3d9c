"""`minbert sweep`: every grid point trained and ranked by dev score, a finished point kept on a rerun; a bad point
fails before any run."""
import json

from minbert.cli import main


def test_sweep_ranks_every_point(tmp_path, tiny_backbone, small_data_dir, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"""
grid:
  train.lr: [1.0e-4, 1.0e-6]
  model.pooling: [mean, cls]
set:
  - model.backbone={tiny_backbone}
  - train.epochs=1
  - train.schedule.until=fixed_steps
  - train.schedule.steps_per_epoch=2
  - eval.test_predictions=false
""")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--data-dir", str(small_data_dir)]) == 0
    results = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert len(results) == 4 and len({r["run"] for r in results}) == 4
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        best = json.loads((tmp_path / "out" / r["run"] / "best_metrics.json").read_text())
        assert best["overall"] == r["score"]
    table = (tmp_path / "out" / "sweep.md").read_text()
    assert table.count("\n| ") == 5 and results[0]["run"] in table.splitlines()[6]
    # the same sweep again: every point finished with the same config, so none is trained (or refused)
    stamps = {r["run"]: (tmp_path / "out" / r["run"] / "best" / "heads.safetensors").stat().st_mtime_ns for r in results}
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--data-dir", str(small_data_dir)]) == 0
    assert json.loads((tmp_path / "out" / "sweep.json").read_text()) == results
    assert stamps == {r: (tmp_path / "out" / r / "best" / "heads.safetensors").stat().st_mtime_ns for r in stamps}
    # a result cut short, and one without its score: a warning each, those two trained again, no traceback
    cut, partial = (tmp_path / "out" / r["run"] / "sweep_result.json" for r in results[:2])
    cut.write_text(cut.read_text()[:40])
    partial.write_text(json.dumps({k: v for k, v in json.loads(partial.read_text()).items() if k != "score"}))
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out"), "--data-dir", str(small_data_dir)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {cut}: unreadable (JSONDecodeError); training that run again" in err
    assert f"warning: {partial}: not a whole result" in err and "Traceback" not in err
    again = {r: (tmp_path / "out" / r / "best" / "heads.safetensors").stat().st_mtime_ns for r in stamps}
    assert [r for r in stamps if again[r] != stamps[r]] == [r["run"] for r in results[:2]]
    assert all(json.loads(p.read_text())["score"] is not None for p in (cut, partial))


def test_a_bad_point_fails_before_any_run(tmp_path, capsys):
    sweep = tmp_path / "s.yaml"
    sweep.write_text("grid:\n  train.lr: [1.0e-4]\n  model.pooling: [mean, median]\n")
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "out")]) == 2
    assert "model.pooling: 'median' is not one of" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
