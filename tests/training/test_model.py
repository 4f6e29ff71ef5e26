"""Shapes and masking of the seq2seq model, for every attention kind."""

from __future__ import annotations

import pytest
import torch

from training.config import ModelConfig
from training.model import Seq2Seq, source_mask_from_lengths

ATTENTIONS = ["luong_general", "luong_dot", "bahdanau", "none"]


def _model(attention: str, encoder_cell: str = "lstm") -> Seq2Seq:
    torch.manual_seed(0)
    config = ModelConfig(vocab_size=50, embedding_dim=12, encoder_hidden=8, encoder_layers=2,
                         decoder_hidden=16, decoder_layers=2, attention=attention, encoder_cell=encoder_cell)
    return Seq2Seq(config).eval()


def _batch(lengths: list[int], src_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    length_tensor = torch.tensor(lengths)
    ids = torch.randint(4, 50, (len(lengths), src_len), generator=generator)
    return ids.masked_fill(~source_mask_from_lengths(length_tensor, src_len), 0), length_tensor


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_forward_shapes_and_attention_rows(attention: str) -> None:
    model = _model(attention)
    source, lengths = _batch([7, 3, 5], 7)
    target_in = torch.randint(4, 50, (3, 6))
    with torch.no_grad():
        logits, weights = model(source, lengths, target_in)
    assert logits.shape == (3, 6, 50)
    assert weights.shape == (3, 6, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
    padding = ~source_mask_from_lengths(lengths, 7)  # [B, S]
    assert float(weights.masked_select(padding.unsqueeze(1).expand_as(weights)).abs().max()) == 0.0


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("encoder_cell", ["lstm", "gru"])
def test_rows_do_not_depend_on_padding_or_batch_mates(attention: str, encoder_cell: str) -> None:
    """Serving batches unrelated requests: a row's output must be the same alone or padded in a batch."""
    model = _model(attention, encoder_cell)
    source, lengths = _batch([9, 4], 9)
    with torch.no_grad():
        batched = model.encode(source, lengths)
        alone = model.encode(source[1:, :4], lengths[1:])
    torch.testing.assert_close(batched[0][1:, :4], alone[0])  # memory of the real positions
    torch.testing.assert_close(batched[2][:, 1:], alone[2])  # decoder hidden state
    mask = source != 0
    previous = torch.tensor([2, 2])
    with torch.no_grad():
        log_probs, _, _, attention_b = model.decode_step(previous, batched[2], batched[3], batched[0],
                                                         batched[1], mask)
        log_probs_alone, _, _, attention_a = model.decode_step(previous[1:], alone[2], alone[3], alone[0],
                                                               alone[1], mask[1:, :4])
    torch.testing.assert_close(log_probs[1:], log_probs_alone, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(attention_b[1:, :4], attention_a, rtol=1e-5, atol=1e-6)


def test_decode_step_matches_teacher_forcing() -> None:
    """The step graph used for serving computes what training optimised."""
    model = _model("bahdanau")
    source, lengths = _batch([6, 6], 6)
    target_in = torch.randint(4, 50, (2, 5))
    with torch.no_grad():
        logits, _ = model(source, lengths, target_in)
        memory, keys, hidden, cell = model.encode(source, lengths)
        for t in range(5):
            log_probs, hidden, cell, _ = model.decode_step(target_in[:, t], hidden, cell, memory, keys, source != 0)
            torch.testing.assert_close(log_probs, torch.log_softmax(logits[:, t], -1), rtol=1e-4, atol=1e-5)


def test_luong_dot_requires_matching_sizes() -> None:
    with pytest.raises(ValueError, match="luong_dot"):
        ModelConfig(vocab_size=10, encoder_hidden=8, decoder_hidden=10, attention="luong_dot")


def test_tied_embeddings_share_one_matrix_and_still_train() -> None:
    config = ModelConfig(vocab_size=50, embedding_dim=12, encoder_hidden=8, decoder_hidden=16, tie_embeddings=True)
    untied = Seq2Seq(ModelConfig(**{**config.__dict__, "tie_embeddings": False}))
    model = Seq2Seq(config)
    shared = model.source_embedding.weight
    assert model.target_embedding.weight is shared and model.output_projection.weight is shared
    assert config.attentional_size == 12  # scored against the embedding rows
    removed = 2 * 50 * 12 + (16 - 12) * 50 + (16 + 16) * (16 - 12)  # two tables, wider output, attentional
    assert sum(p.numel() for p in untied.parameters()) - sum(p.numel() for p in model.parameters()) == removed
    source, lengths = _batch([5, 3], 5)
    logits, weights = model(source, lengths, torch.randint(4, 50, (2, 4)))
    assert logits.shape == (2, 4, 50) and weights.shape == (2, 4, 5)
    logits.sum().backward()
    assert shared.grad is not None and bool(shared.grad.abs().sum() > 0)
