"""minbert.Tokenizer against transformers.BertTokenizerFast on the course files, built from tokenizer.json or vocab.txt."""
import pytest
import transformers

from minbert import Tokenizer
from minbert.backbone import CheckpointError
from minbert.tasks import COURSE_TASKS


@pytest.fixture(scope="module")
def tokenizers(backbone_dir):
    return Tokenizer.from_pretrained(max_length=128), transformers.BertTokenizerFast.from_pretrained(str(backbone_dir))


@pytest.mark.parametrize("task", sorted(COURSE_TASKS))
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_ids_equal_transformers_on_course_files(tokenizers, data_dir, task, split):
    ours, ref = tokenizers
    examples, _ = COURSE_TASKS[task].read(data_dir, split)
    columns = list(zip(*(ex.texts for ex in examples)))
    got = ours.encode(*columns)
    want = ref(*[list(c) for c in columns], truncation=True, max_length=128)
    assert [ids for ids, _ in got] == want["input_ids"]
    assert [types for _, types in got] == want["token_type_ids"]


def test_padding_and_pairs(tokenizers):
    ours, ref = tokenizers
    a, b = ["A man plays.", "Hi"], ["Someone is playing music loudly.", "there"]
    got = ours(a, b)
    want = ref(a, b, padding=True, truncation=True, max_length=128, return_tensors="pt")
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        assert got[key].tolist() == want[key].tolist()
    assert got["input_ids"][0, 0] == ours.cls_id and (got["input_ids"][1] == ours.pad_id).any()


def test_truncation_is_configurable(backbone_dir):
    short = Tokenizer.from_pretrained(max_length=16)
    ref = transformers.BertTokenizerFast.from_pretrained(str(backbone_dir))
    long_a, long_b = "word " * 40, "other thing " * 5
    assert short.encode([long_a], [long_b])[0][0] == ref(long_a, long_b, truncation=True, max_length=16)["input_ids"]
    assert len(short.encode(["x " * 100_000])[0][0]) == 16


def course_inputs(data_dir) -> list[tuple[str, ...]]:
    """Every sentence and pair of the small course files: SST sentences, Quora and STS pairs."""
    return [ex.texts for task in ("sst", "para", "sts") for split in ("train", "dev")
            for ex in COURSE_TASKS[task].read(data_dir, split)[0]]


def folder_with(tmp_path, backbone_dir, names: list[str]):
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in names:
        (tmp_path / name).write_bytes((backbone_dir / name).read_bytes())
    return tmp_path


@pytest.mark.parametrize("files", [["tokenizer.json"], ["vocab.txt", "tokenizer_config.json"]],
                         ids=["tokenizer.json only", "vocab.txt only"])
@pytest.mark.parametrize("max_length", [128, 12])
def test_either_source_gives_the_ids_of_transformers(tmp_path, backbone_dir, small_data_dir, files, max_length):
    ours = Tokenizer.from_pretrained(folder_with(tmp_path, backbone_dir, files), max_length=max_length)
    assert ours.source.name == files[0]
    ref = transformers.BertTokenizerFast.from_pretrained(str(backbone_dir))
    inputs = course_inputs(small_data_dir)
    singles, pairs = [t for t in inputs if len(t) == 1], [t for t in inputs if len(t) == 2]
    assert len(singles) >= 100 and len(pairs) >= 200
    for batch in (singles, pairs):
        columns = [list(c) for c in zip(*batch)]
        want = ref(*columns, truncation=True, max_length=max_length)
        got = ours.encode(*columns)
        assert [ids for ids, _ in got] == want["input_ids"]
        assert [types for _, types in got] == want["token_type_ids"]
    assert (ours.cls_id, ours.sep_id, ours.pad_id, ours.mask_id, ours.unk_id) == (
        ref.cls_token_id, ref.sep_token_id, ref.pad_token_id, ref.mask_token_id, ref.unk_token_id)


def test_a_tokenizer_json_only_folder_saves_and_loads_back(tmp_path, backbone_dir, small_data_dir):
    first = Tokenizer.from_pretrained(folder_with(tmp_path / "src", backbone_dir, ["tokenizer.json"]), max_length=32)
    first.save_pretrained(tmp_path / "saved")
    assert (tmp_path / "saved" / "tokenizer.json").read_bytes() == (backbone_dir / "tokenizer.json").read_bytes()
    assert not (tmp_path / "saved" / "vocab.txt").exists()
    again = Tokenizer.from_pretrained(tmp_path / "saved", max_length=32)
    theirs = transformers.BertTokenizerFast.from_pretrained(str(tmp_path / "saved"))  # the saved folder, read by transformers
    pairs = [list(c) for c in zip(*[t for t in course_inputs(small_data_dir) if len(t) == 2])]
    want = theirs(*pairs, truncation=True, max_length=32)
    assert [ids for ids, _ in again.encode(*pairs)] == want["input_ids"]
    assert [types for _, types in again.encode(*pairs)] == want["token_type_ids"]


def test_a_folder_without_tokenizer_files_is_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="vocab.txt: vocabulary file not found"):
        Tokenizer.from_pretrained(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="tokenizer.json: not a readable tokenizer.json"):
        Tokenizer.from_pretrained(tmp_path)
