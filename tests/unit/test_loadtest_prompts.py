import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders

from loadtests.prompts import CHARS_PER_TOKEN, PromptFactory


@pytest.fixture(scope="module")
def tokenizer():
    """A small byte-level BPE, so that words split into several tokens."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([PromptFactory().text(500, stream=i) for i in range(20)], trainer)
    return tok


@pytest.mark.parametrize("tokens", [1, 7, 64, 513])
def test_exact_length_with_a_tokenizer(tokenizer, tokens):
    factory = PromptFactory(tokenizer)
    prompt = factory.prompt(index=3, tokens=tokens)
    assert len(tokenizer.encode(prompt, add_special_tokens=False).ids) == tokens


def test_tokenizer_from_a_path(tokenizer, tmp_path):
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    factory = PromptFactory(str(tmp_path))  # the folder is enough
    assert factory.count(factory.prompt(0, 50)) == 50


def test_estimate_without_a_tokenizer():
    factory = PromptFactory()
    prompt = factory.prompt(0, 100)
    assert abs(len(prompt) - 100 * CHARS_PER_TOKEN) <= 12
    assert factory.count(prompt) == pytest.approx(100, abs=3)


def test_prompts_differ_by_index_and_repeat_by_seed():
    a, b = PromptFactory(seed=1), PromptFactory(seed=1)
    assert a.prompt(0, 50) == b.prompt(0, 50)
    assert a.prompt(0, 50) != a.prompt(1, 50)
    assert a.prompt(0, 50) != PromptFactory(seed=2).prompt(0, 50)


def test_shared_prefix_is_common_and_suffixes_unique(tokenizer):
    factory = PromptFactory(tokenizer, shared_prefix_tokens=32)
    prompts = [factory.prompt(i, 100) for i in range(3)]
    prefix = factory.text(32, stream=-1)
    assert all(p.startswith(prefix + " ") for p in prompts)
    assert len({p[len(prefix):] for p in prompts}) == 3
    assert all(factory.count(p) == pytest.approx(100, abs=2) for p in prompts)
