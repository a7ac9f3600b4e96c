import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/checkpoints.py and friends
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import checkpoints  # noqa: E402

GSM8K = os.path.join(os.path.dirname(checkpoints.ROOT), "shared", "data", "gsm8k", "test.jsonl")


@pytest.fixture(scope="session")
def bert_dir(tmp_path_factory):
    return checkpoints.make_bert(str(tmp_path_factory.mktemp("ck") / "tiny-bert-base-multilingual-cased"))


@pytest.fixture(scope="session")
def xlmr_dir(tmp_path_factory):
    return checkpoints.make_xlmr(str(tmp_path_factory.mktemp("ck") / "tiny-xlm-roberta-large"))


@pytest.fixture(scope="session")
def corpus():
    return checkpoints.corpus_texts()


@pytest.fixture(scope="session")
def gsm8k():
    if not os.path.isfile(GSM8K):
        pytest.skip(f"GSM8K not found at {GSM8K} (it lives beside the project, in shared/data)")
    with open(GSM8K, encoding="utf-8") as f:
        return [json.loads(line) for line in f]
