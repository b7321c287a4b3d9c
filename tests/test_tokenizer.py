"""minbert.Tokenizer against transformers.BertTokenizerFast on every sentence and pair of the course files."""
import pytest
import transformers

from minbert import Tokenizer
from minbert.tasks import TASKS


@pytest.fixture(scope="module")
def tokenizers(backbone_dir):
    return Tokenizer.from_pretrained(max_length=128), transformers.BertTokenizerFast.from_pretrained(str(backbone_dir))


@pytest.mark.parametrize("task", sorted(TASKS))
@pytest.mark.parametrize("split", ["train", "dev", "test"])
def test_ids_equal_transformers_on_course_files(tokenizers, data_dir, task, split):
    ours, ref = tokenizers
    examples, _ = TASKS[task].read(data_dir, split)
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
