"""Backbones by Hugging Face Hub id, through a real huggingface_hub cache built from the bundled
all-MiniLM-L6-v2 files, offline (HF_HUB_OFFLINE=1), in subprocesses that see only that cache."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from huggingface_hub import scan_cache_dir, try_to_load_from_cache

REPO = Path(__file__).resolve().parents[1]
REPO_ID = "sentence-transformers/all-MiniLM-L6-v2"
MAIN = hashlib.sha1(b"minbert test: main").hexdigest()  # two commits of the repository
OLD = hashlib.sha1(b"minbert test: old").hexdigest()
FILES = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
         "vocab.txt", "modules.json", "README.md"]
LFS_FILES = {"model.safetensors"}


def blob_name(name: str, data: bytes) -> str:
    """The Hub's etag, which names a cached blob: sha256 for LFS files, the git blob sha1 otherwise."""
    if name in LFS_FILES:
        return hashlib.sha256(data).hexdigest()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def add_snapshot(cache: Path, repo_id: str, commit: str, source: Path, files: list[str], refs: list[str]) -> Path:
    """Lay out `models--ORG--NAME/{blobs, snapshots/COMMIT, refs/REF}` as huggingface_hub writes it: each
    snapshot file a relative symlink to its blob, each ref file holding the commit hash."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    snapshot.mkdir(parents=True)
    for name in files:
        data = (source / name).read_bytes()
        blob = repo / "blobs" / blob_name(name, data)
        if not blob.exists():
            blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..") / ".." / "blobs" / blob.name)
    for ref in refs:
        (repo / "refs" / ref).write_text(commit)
    return snapshot


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, backbone_dir) -> Path:
    cache = tmp_path_factory.mktemp("hf-cache")
    # main has only tokenizer.json (no vocab.txt), so the run below exercises that path end to end
    add_snapshot(cache, REPO_ID, MAIN, backbone_dir, [f for f in FILES if f != "vocab.txt"], ["main"])
    add_snapshot(cache, REPO_ID, OLD, backbone_dir, FILES, ["v0"])  # an older commit on branch v0
    return cache


def hub_env(cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    return {**env, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def minbert(env: dict[str, str], *args) -> subprocess.CompletedProcess:
    proc = run(["-m", "minbert", *map(str, args)], env)
    assert proc.returncode == 0, f"minbert {' '.join(map(str, args))} failed:\n{proc.stderr}"
    return proc


def test_the_library_reads_the_cache_we_built(hub_cache):
    info = scan_cache_dir(hub_cache)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO_ID and repo.repo_type == "model"
    assert {r.commit_hash: set(r.refs) for r in repo.revisions} == {MAIN: {"main"}, OLD: {"v0"}}
    found = try_to_load_from_cache(REPO_ID, "config.json", cache_dir=hub_cache, revision="v0")
    assert found == str(hub_cache / f"models--sentence-transformers--all-MiniLM-L6-v2/snapshots/{OLD}/config.json")


RESOLVE = """import json, sys
from minbert.backbone import CheckpointError, locate_backbone
out = {}
for spec in sys.argv[1:]:
    try:
        b = locate_backbone(spec)
        out[spec] = [str(b.folder), b.spec]
    except CheckpointError as e:
        out[spec] = str(e)
print(json.dumps(out))
"""


def resolve(specs: list[str], env: dict[str, str], cwd: Path) -> dict:
    env = {**env, "PYTHONPATH": os.pathsep.join(p for p in [str(REPO / "src"), os.environ.get("PYTHONPATH")] if p)}
    proc = subprocess.run([sys.executable, "-c", RESOLVE, *specs], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def resolved(tmp_path_factory, hub_cache, backbone_dir) -> dict:
    """locate_backbone on several specs, in one offline process whose working folder holds `./missing` (no)
    and a local copy of the bundled folder at ./local-org/local-model (a folder shaped like a Hub id)."""
    cwd = tmp_path_factory.mktemp("cwd")
    shutil.copytree(backbone_dir, cwd / "local-org" / "local-model", ignore=shutil.ignore_patterns("model.safetensors"))
    specs = [REPO_ID, f"{REPO_ID}@main", f"{REPO_ID}@v0", f"{REPO_ID}@{OLD}", f"{REPO_ID}@v9", "local-org/local-model",
             str(cwd / "missing")]
    return {"cwd": cwd, **resolve(specs, hub_env(hub_cache), cwd)}


def test_revisions_resolve_offline_to_their_snapshots(resolved, hub_cache):
    snapshots = hub_cache / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots"
    for spec, commit in [(REPO_ID, MAIN), (f"{REPO_ID}@main", MAIN), (f"{REPO_ID}@v0", OLD), (f"{REPO_ID}@{OLD}", OLD)]:
        assert resolved[spec] == [str(snapshots / commit), f"{REPO_ID}@{commit}"], spec


def test_an_unknown_revision_offline_names_the_cache(resolved, hub_cache):
    message = resolved[f"{REPO_ID}@v9"]
    assert message.startswith(f"{REPO_ID}@v9: ") and str(hub_cache) in message and "\n" not in message


def test_a_local_folder_wins_and_a_missing_path_is_not_looked_up(resolved):
    assert resolved["local-org/local-model"] == ["local-org/local-model", "local-org/local-model"]
    missing = resolved["cwd"] / "missing"
    assert resolved[str(missing)] == f"{missing}: checkpoint folder not found"  # not shaped like an id


def test_train_evaluate_predict_through_a_hub_id(tmp_path, hub_cache, small_data_dir, backbone_dir):
    env, run_dir = hub_env(hub_cache), tmp_path / "run"
    minbert(env, "train", "--data-dir", small_data_dir, "--out", run_dir,
            "--set", f"model.backbone={REPO_ID}", "--set", "model.max_length=64", "--set", "train.epochs=1",
            "--set", "train.schedule.until=fixed_steps", "--set", "train.schedule.steps_per_epoch=2",
            "--set", "train.batch_size={sst: 4, para: 4, sts: 4}", "--set", "train.threads=1",
            "--set", "data.dev_limit=8", "--set", "eval.test_predictions=false")
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["backbone"] == f"{REPO_ID}@{MAIN}"
    # the best checkpoint carries the tokenizer it was built from, and evaluate / predict load it from there
    assert (run_dir / "best" / "tokenizer.json").read_bytes() == (backbone_dir / "tokenizer.json").read_bytes()
    assert not (run_dir / "best" / "vocab.txt").exists()
    shown = json.loads(minbert(env, "evaluate", run_dir, "--data-dir", small_data_dir).stdout.strip().splitlines()[-1])
    best = json.loads((run_dir / "best_metrics.json").read_text())
    assert shown["metrics"]["overall"] == pytest.approx(best["overall"], abs=1e-6)
    # predict through the Hub-trained run gives the score the trainer wrote for the same dev pair
    from minbert.tasks import COURSE_TASKS
    written = dict(line.replace(" ", "").split(",") for line in
                   (run_dir / "predictions" / "sts-dev-output.csv").read_text().splitlines()[1:])
    rows, _ = COURSE_TASKS["sts"].read(small_data_dir, "dev")
    first = next(e for e in rows if e.id in written)  # data.dev_limit scored 8 rows drawn from the file
    sts = json.loads(minbert(env, "predict", run_dir, "--task", "sts", *first.texts).stdout)
    assert sts["prediction"] == written[first.id]


def test_an_id_not_in_the_offline_cache_is_one_line_and_writes_nothing(tmp_path, hub_cache, small_data_dir):
    out = tmp_path / "run"
    proc = run(["-m", "minbert", "train", "--data-dir", str(small_data_dir), "--out", str(out),
                "--set", "model.backbone=google-bert/bert-base-uncased"], hub_env(hub_cache))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minbert: error: model.backbone: google-bert/bert-base-uncased: ")
    assert str(hub_cache) in lines[0] and "HF_HUB_OFFLINE" in lines[0]
    assert not out.exists()


def test_with_the_hub_unreachable_cached_ids_still_resolve(hub_cache, tmp_path):
    """Not offline, but the endpoint refuses connections (a network that is down): huggingface_hub falls
    back to the cache for a branch; a cached commit needs no request at all; an uncached id is one line."""
    env = {k: v for k, v in hub_env(hub_cache).items() if k != "HF_HUB_OFFLINE"}
    got = resolve([REPO_ID, f"{REPO_ID}@{OLD}", "some-org/not-cached"], {**env, "HF_ENDPOINT": "http://127.0.0.1:9"},
                  tmp_path)
    snapshots = hub_cache / "models--sentence-transformers--all-MiniLM-L6-v2" / "snapshots"
    assert got[REPO_ID] == [str(snapshots / MAIN), f"{REPO_ID}@{MAIN}"]
    assert got[f"{REPO_ID}@{OLD}"] == [str(snapshots / OLD), f"{REPO_ID}@{OLD}"]
    assert got["some-org/not-cached"].startswith("some-org/not-cached: cannot reach the Hugging Face Hub")
    assert str(hub_cache) in got["some-org/not-cached"]


MOVING_BRANCH = """
import sys
from pathlib import Path
import minbert.hub as hub
from minbert.cli import main

ref, old = Path(sys.argv[1]), sys.argv[2]
real, unpinned = hub.fetch_snapshot, []
def fetch_then_move(hub_id):  # the branch moves on to another commit right after each read of it
    snapshot = real(hub_id)
    if hub_id.revision is None:
        unpinned.append(str(hub_id))
        ref.write_text(old)
    return snapshot
hub.fetch_snapshot = fetch_then_move
code = main(sys.argv[3:])
print("UNPINNED", len(unpinned))
sys.exit(code)
"""


def test_a_hub_branch_is_read_once_so_a_run_checks_and_trains_the_same_commit(tmp_path, backbone_dir, small_data_dir):
    cache = tmp_path / "cache"
    add_snapshot(cache, REPO_ID, MAIN, backbone_dir, FILES, ["main"])
    add_snapshot(cache, REPO_ID, OLD, backbone_dir, FILES, [])
    ref = cache / ("models--" + REPO_ID.replace("/", "--")) / "refs" / "main"
    run_dir = tmp_path / "run"
    done = run(["-c", MOVING_BRANCH, str(ref), OLD, "train", "--data-dir", str(small_data_dir),
                "--out", str(run_dir), "--set", f"model.backbone={REPO_ID}", "--set", "model.max_length=64",
                "--set", "train.epochs=1", "--set", "train.schedule.until=fixed_steps",
                "--set", "train.schedule.steps_per_epoch=1", "--set", "train.batch_size={sst: 4, para: 4, sts: 4}",
                "--set", "train.threads=1", "--set", "data.dev_limit=8", "--set", "eval.test_predictions=false"],
               hub_env(cache))
    assert "UNPINNED 1" in done.stdout  # preflight pinned it; training looked up that commit, not the branch
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["model"]["backbone"] == f"{REPO_ID}@{MAIN}"
    assert ref.read_text() == OLD  # the branch did move after the one read
