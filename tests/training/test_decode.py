"""training.decode: greedy and beam search bookkeeping on tiny models (CPU, seconds)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_store.codec import BOS_ID, EOS_ID, PAD_ID
from training.config import ModelConfig
from training.decode import beam_batch, length_penalty, max_decode_steps, translate_ids
from training.model import Seq2Seq

VOCAB = 24


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Two threads on a busy 2-core machine run these small ops about ten times slower than one.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(attention: str = "luong_general", seed: int = 0) -> Seq2Seq:
    torch.manual_seed(seed)
    return Seq2Seq(ModelConfig(
        vocab_size=VOCAB, embedding_dim=16, encoder_hidden=16, encoder_layers=1, decoder_hidden=32,
        decoder_layers=1, attention=attention, dropout=0.0,  # type: ignore[arg-type]
    ))


def random_sources(count: int, seed: int, max_words: int = 11) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_words + 1, (count,), generator=generator).tolist()
    return [[*torch.randint(4, VOCAB, (n,), generator=generator).tolist(), EOS_ID] for n in lengths]


@pytest.fixture(scope="module")
def trained_model() -> Seq2Seq:
    """A model briefly trained to reverse its input: it ends outputs with eos at varied lengths,
    which a random model does not (it either stops at once or runs to the length limit)."""
    model = tiny_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        sources = random_sources(16, int(torch.randint(0, 10**6, (1,), generator=generator)), max_words=8)
        src_len = max(len(s) for s in sources)
        source_ids = torch.tensor([s + [PAD_ID] * (src_len - len(s)) for s in sources])
        targets = [[BOS_ID, *reversed(s[:-1]), EOS_ID] for s in sources]
        tgt_len = max(len(t) for t in targets)
        target_ids = torch.tensor([t + [PAD_ID] * (tgt_len - len(t)) for t in targets])
        logits, _ = model(source_ids, torch.tensor([len(s) for s in sources]), target_ids[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), target_ids[:, 1:].reshape(-1), ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def rescore(model: Seq2Seq, source: list[int], tokens: list[int], ended_with_eos: bool):
    """Teacher-forced log-probability and attention of a given output: the truth beam search must match."""
    target = [*tokens, EOS_ID] if ended_with_eos else tokens
    with torch.inference_mode():
        logits, weights = model(torch.tensor([source]), torch.tensor([len(source)]),
                                torch.tensor([[BOS_ID, *target[:-1]]]))
        log_probs = torch.log_softmax(logits[0].float(), dim=-1)
    total = sum(log_probs[step, token].item() for step, token in enumerate(target))
    return total, weights[0, : len(target)].numpy()


def test_trained_fixture_ends_with_eos_at_varied_lengths(trained_model):
    hypotheses = translate_ids(trained_model, random_sources(30, seed=1), beam_size=1, return_attention=True)
    lengths = {len(h.token_ids) for h in hypotheses}
    assert len(lengths) >= 4
    assert all(h.attention is not None and h.attention.shape[0] == len(h.token_ids) + 1 for h in hypotheses)


@pytest.mark.parametrize("attention", ["luong_general", "luong_dot", "bahdanau", "none"])
@pytest.mark.parametrize("max_length_cap", [6, 200])
def test_beam_one_equals_greedy(attention, max_length_cap, trained_model):
    model = trained_model if attention == "luong_general" else tiny_model(attention, seed=3).eval()
    sources = random_sources(25, seed=2)
    greedy = translate_ids(model, sources, beam_size=1, max_length_cap=max_length_cap, return_attention=True)
    with torch.inference_mode():
        beam = beam_batch(model, sources, beam_size=1, max_length_cap=max_length_cap, return_attention=True)
    for g, b in zip(greedy, beam, strict=True):
        assert g.token_ids == b.token_ids
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-4)
        assert g.attention is not None and b.attention is not None
        np.testing.assert_allclose(g.attention, b.attention, atol=1e-6)
    if attention == "luong_general" and max_length_cap == 6:  # both ways of ending are compared
        assert any(len(g.token_ids) == 6 for g in greedy)
        assert any(len(g.token_ids) < 6 for g in greedy)


@pytest.mark.parametrize("beam_size", [1, 3, 8])
def test_output_never_exceeds_max_length(beam_size):
    model = tiny_model(seed=5).eval()  # a random model tends to run to the limit
    sources = random_sources(12, seed=3)
    for cap in (4, 200):
        hypotheses = translate_ids(model, sources, beam_size=beam_size, max_length_cap=cap,
                                   return_attention=True)
        for source, hypothesis in zip(sources, hypotheses, strict=True):
            limit = max_decode_steps(len(source), cap)
            assert len(hypothesis.token_ids) <= limit
            assert hypothesis.attention is not None and hypothesis.attention.shape[0] <= limit
            assert EOS_ID not in hypothesis.token_ids
    assert max_decode_steps(3, 200) == 16 and max_decode_steps(100, 200) == 200


@pytest.mark.parametrize("beam_size", [1, 4])
def test_attention_covers_real_tokens_only(beam_size, trained_model):
    # Cropped to each source's real length, a row that sums to 1 leaves nothing for the padding the
    # batch gave it (the model's softmax spans the padded width).
    sources = random_sources(16, seed=4)
    hypotheses = translate_ids(trained_model, sources, beam_size=beam_size, return_attention=True)
    for source, hypothesis in zip(sources, hypotheses, strict=True):
        attention = hypothesis.attention
        assert attention is not None
        assert attention.shape == (len(hypothesis.token_ids) + 1, len(source))
        np.testing.assert_allclose(attention.sum(axis=1), 1.0, atol=1e-5)
        assert (attention >= 0).all()


@pytest.mark.parametrize("beam_size", [1, 5])
def test_results_do_not_depend_on_batching_or_order(beam_size, trained_model):
    sources = random_sources(20, seed=6)
    together = translate_ids(trained_model, sources, beam_size=beam_size, return_attention=True)
    for batch_sentences in (1, 3):
        apart = translate_ids(trained_model, sources, beam_size=beam_size, return_attention=True,
                              batch_sentences=batch_sentences)
        for a, b in zip(together, apart, strict=True):
            assert a.token_ids == b.token_ids
            assert a.attention is not None and b.attention is not None
            np.testing.assert_allclose(a.attention, b.attention, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_hypothesis_matches_teacher_forced_rescoring(alpha, trained_model):
    """The returned tokens, log-probability and attention all belong to one path: backpointers are right."""
    sources = random_sources(12, seed=7)
    hypotheses = translate_ids(trained_model, sources, beam_size=4, length_penalty_alpha=alpha,
                               max_length_cap=9, return_attention=True)
    for source, hypothesis in zip(sources, hypotheses, strict=True):
        assert hypothesis.attention is not None
        ended_with_eos = hypothesis.attention.shape[0] == len(hypothesis.token_ids) + 1
        log_prob, attention = rescore(trained_model, source, hypothesis.token_ids, ended_with_eos)
        assert hypothesis.log_prob == pytest.approx(log_prob, abs=1e-3)
        np.testing.assert_allclose(hypothesis.attention, attention, atol=1e-4)


def test_beam_finds_paths_at_least_as_likely_as_greedy_on_average(trained_model):
    sources = random_sources(30, seed=8)
    greedy = translate_ids(trained_model, sources, beam_size=1)
    beam = translate_ids(trained_model, sources, beam_size=5, length_penalty_alpha=0.0)
    assert sum(b.log_prob for b in beam) >= sum(g.log_prob for g in greedy) - 1e-4


def test_decoding_leaves_training_mode_and_gradients_alone():
    model = tiny_model()
    model.train()
    hypotheses = translate_ids(model, random_sources(3, seed=9), beam_size=2)
    assert model.training
    assert len(hypotheses) == 3
    assert all(p.grad is None for p in model.parameters())


def test_beam_size_is_checked_and_empty_input_is_fine():
    model = tiny_model().eval()
    with pytest.raises(ValueError, match="beam_size"):
        translate_ids(model, random_sources(2, seed=0), beam_size=9)
    assert translate_ids(model, [], beam_size=4) == []


def test_length_penalty_is_gnmt():
    assert length_penalty(1, 0.6) == pytest.approx(1.0)
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(10, 0.0) == 1.0


def looping_model() -> Seq2Seq:
    """A model that writes token 5 for ever (then 6, then eos, by its output bias): a loop, with margins
    wide enough that two implementations of the loop rule can only agree or really differ."""
    model = tiny_model(seed=3)
    with torch.no_grad():
        model.output_projection.bias.fill_(-10.0)
        model.output_projection.bias[5] = 6.0
        model.output_projection.bias[6] = 4.0
        model.output_projection.bias[EOS_ID] = 2.0
    return model.eval()


def _served(model: Seq2Seq, source: list[int], beam_size: int, marks: list[int] | None) -> list[int]:
    """The service's search (service.engine) driven by the PyTorch model's steps."""
    from service.engine import BeamSearch, GreedySearch, SpecialIds

    special = SpecialIds(PAD_ID, 1, BOS_ID, EOS_ID, word_marks=tuple(marks or ()))
    limit = max_decode_steps(len(source), 40)  # tokens before eos, as training counts its steps
    search = (GreedySearch(special, limit, False) if beam_size == 1
              else BeamSearch(special, beam_size, limit, 1.0, False))
    with torch.inference_mode():
        memory, keys, hidden, cell = model.encode(torch.tensor([source]), torch.tensor([len(source)]))
        rows = torch.zeros(search.rows, dtype=torch.long)
        memory, keys, hidden, cell = memory[rows], keys[rows], hidden[:, rows], cell[:, rows]
        mask = torch.ones((search.rows, len(source)), dtype=torch.bool)
        previous = torch.full((search.rows,), BOS_ID, dtype=torch.long)
        while True:
            log_probs, hidden, cell, attention = model.decode_step(previous, hidden, cell, memory, keys, mask)
            advance = search.advance(log_probs.numpy(), attention.numpy())
            if advance.done:
                return search.best().target_ids
            parents = torch.tensor(advance.parents.tolist(), dtype=torch.long)  # a read-only array for greedy
            memory, keys, mask = memory[parents], keys[parents], mask[parents]
            hidden, cell = hidden[:, parents], cell[:, parents]
            previous = torch.tensor(advance.tokens.tolist(), dtype=torch.long)


@pytest.mark.parametrize("beam_size", [1, 3])
def test_the_loop_rule_is_the_services(beam_size: int) -> None:
    from model_store.repetition import WORDY, looping_tokens

    model = looping_model()
    marks = [WORDY] * VOCAB
    sources = random_sources(4, seed=5)
    plain = translate_ids(model, sources, beam_size=beam_size, length_penalty_alpha=1.0, max_length_cap=40)
    ruled = translate_ids(model, sources, beam_size=beam_size, length_penalty_alpha=1.0, max_length_cap=40,
                          loop_marks=marks)
    for source, before, after in zip(sources, plain, ruled, strict=True):
        assert before.token_ids[:3] == [5, 5, 5]  # the model loops
        tokens = after.token_ids
        if beam_size == 1:
            assert tokens[:3] == [5, 5, 6], tokens  # the rule stops it at the third 5
        assert all(tokens[i] not in looping_tokens(tokens[:i], marks) for i in range(len(tokens)))
        assert _served(model, source, beam_size, marks) == tokens  # the service decodes the same
        assert _served(model, source, beam_size, None) == before.token_ids
