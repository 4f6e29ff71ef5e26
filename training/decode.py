"""Batched greedy and beam search in PyTorch over Seq2Seq.encode / decode_step (evaluation and export parity).

Works on token ids only (tokenization stays in model_store.codec); imports torch, numpy, training.model
and model_store.codec; must not import service or onnxruntime.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model_store.codec import BOS_ID, EOS_ID, PAD_ID, Codec
from model_store.repetition import RECENT_TOKENS, looping_tokens
from training.model import Seq2Seq, source_mask_from_lengths

DEFAULT_MAX_LENGTH_CAP = 200  # decode steps, whatever the source length
DEFAULT_LENGTH_PENALTY_ALPHA = 0.6  # GNMT (Wu et al. 2016); 0 = rank by raw log-probability
# Rows (sentences x beams) decoded together; more rows amortise per-step overhead, fewer keep
# memory and the wasted work on finished-but-padded rows small.
GREEDY_BATCH_SENTENCES = 128
BEAM_BATCH_ROWS = 320
COMPACT_WHEN_DONE_ONE_IN = 4  # see _worth_compacting


@dataclass(frozen=True)
class Hypothesis:
    token_ids: list[int]  # without bos and eos
    log_prob: float  # sum of the chosen tokens' log-probabilities (eos included when emitted)
    # [steps, src_len] float32 over the real source tokens (eos included); steps = len(token_ids) + 1
    # when the hypothesis ended with eos, len(token_ids) when it hit the max length. None unless asked.
    attention: np.ndarray | None = None


def max_decode_steps(source_length: int, max_length_cap: int) -> int:
    """Longest output in decode steps (tokens, eos included) for a source of `source_length` ids."""
    return min(2 * source_length + 10, max_length_cap)


def length_penalty(steps: int, alpha: float) -> float:
    """GNMT length penalty ((5 + |Y|) / 6) ** alpha; scores are log_prob / penalty."""
    return ((5.0 + steps) / 6.0) ** alpha


def _padded_batch(
    sources: Sequence[Sequence[int]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = [len(ids) for ids in sources]
    if min(lengths) < 1:
        raise ValueError("every source needs at least one id (source_ids end with eos)")
    source_ids = torch.full((len(sources), max(lengths)), PAD_ID, dtype=torch.long)
    for row, ids in enumerate(sources):
        source_ids[row, : len(ids)] = torch.as_tensor(list(ids), dtype=torch.long)
    return source_ids.to(device), torch.as_tensor(lengths, dtype=torch.long, device=device)


def _ban_loops(log_probs: torch.Tensor, histories: Sequence[Sequence[int] | None], marks: Sequence[int]) -> None:
    """-inf, in place, for each row's tokens that would write a group of words a third time in a row
    (model_store.repetition, the service's rule); a None history is a row that is done."""
    for row, history in enumerate(histories):
        if history is not None and len(history) >= 2:
            banned = looping_tokens(history[-RECENT_TOKENS:], marks)
            if banned:
                log_probs[row, banned] = float("-inf")


def greedy_batch(
    model: Seq2Seq, sources: Sequence[Sequence[int]], *, max_length_cap: int = DEFAULT_MAX_LENGTH_CAP,
    return_attention: bool = False, loop_marks: Sequence[int] | None = None,
) -> list[Hypothesis]:
    """Greedy search for one batch of source id lists (each pieces + [eos]); done rows leave in bulk.
    `loop_marks` (Codec.loop_marks): the loop rule applies, as in the service."""
    device = next(model.parameters()).device
    source_ids, source_lengths = _padded_batch(sources, device)
    memory, memory_keys, hidden, cell = model.encode(source_ids, source_lengths)
    source_mask = source_mask_from_lengths(source_lengths, source_ids.shape[1])  # [B, S]
    step_limits = [max_decode_steps(len(ids), max_length_cap) for ids in sources]

    tokens: list[list[int]] = [[] for _ in sources]
    log_probs_sum = [0.0] * len(sources)
    attention_rows: list[list[np.ndarray]] = [[] for _ in sources]
    # Original row per batch row; None once done. Done rows are dropped from the state tensors only
    # when enough have piled up: each drop copies the encoder memory, which costs more than a few
    # wasted steps of the rows that are already done.
    active: list[int | None] = list(range(len(sources)))
    previous = torch.full((len(sources),), BOS_ID, dtype=torch.long, device=device)
    step = 0
    while True:
        log_probs, hidden, cell, attention = model.decode_step(
            previous, hidden, cell, memory, memory_keys, source_mask
        )
        if loop_marks is not None:
            _ban_loops(log_probs, [None if row is None else tokens[row] for row in active], loop_marks)
        best_log_probs, best_tokens = log_probs.max(dim=-1)  # [B]
        best_tokens_list = best_tokens.tolist()
        best_log_probs_list = best_log_probs.tolist()
        attention_np = attention.float().cpu().numpy() if return_attention else None
        step += 1
        for position, row in enumerate(active):
            if row is None:
                continue
            token = best_tokens_list[position]
            log_probs_sum[row] += best_log_probs_list[position]
            if attention_np is not None:
                attention_rows[row].append(attention_np[position, : len(sources[row])])
            if token != EOS_ID:
                tokens[row].append(token)
            if token == EOS_ID or step >= step_limits[row]:
                active[position] = None
        live = [position for position, row in enumerate(active) if row is not None]
        if not live:
            break
        if _worth_compacting(len(active), len(live)):
            index = torch.as_tensor(live, dtype=torch.long, device=device)
            hidden, cell = hidden[:, index], cell[:, index]
            memory, memory_keys, source_mask = memory[index], memory_keys[index], source_mask[index]
            best_tokens = best_tokens[index]
            active = [active[position] for position in live]
        previous = best_tokens
    return [
        Hypothesis(
            token_ids=tokens[row], log_prob=log_probs_sum[row],
            attention=np.stack(attention_rows[row]) if return_attention else None,
        )
        for row in range(len(sources))
    ]


def beam_batch(
    model: Seq2Seq, sources: Sequence[Sequence[int]], *, beam_size: int,
    length_penalty_alpha: float = DEFAULT_LENGTH_PENALTY_ALPHA,
    max_length_cap: int = DEFAULT_MAX_LENGTH_CAP, return_attention: bool = False,
    loop_marks: Sequence[int] | None = None,
) -> list[Hypothesis]:
    """Beam search for one batch; the best finished hypothesis per sentence by GNMT-normalised score.

    Each step takes the top 2K candidates of every sentence: eos candidates ranked within the top K
    finish (scored log_prob / length_penalty), the best K others stay alive. A sentence is done when
    K hypotheses have finished or it reaches its max length (then its alive beams finish as they are).
    With K = 1 this is exactly greedy search. `loop_marks` (Codec.loop_marks): no beam may write a
    group of words a third time in a row, as in the service.
    """
    if not 1 <= beam_size <= 8:
        raise ValueError(f"beam_size must be in 1..8, got {beam_size}")
    k = beam_size
    device = next(model.parameters()).device
    source_ids, source_lengths = _padded_batch(sources, device)
    memory, memory_keys, hidden, cell = model.encode(source_ids, source_lengths)
    source_mask = source_mask_from_lengths(source_lengths, source_ids.shape[1])  # [B, S]
    # Every sentence's state repeated K times: rows b*K .. b*K+K-1 are sentence b's beams.
    memory = memory.repeat_interleave(k, dim=0)  # [B*K, S, M]
    memory_keys = memory_keys.repeat_interleave(k, dim=0)
    source_mask = source_mask.repeat_interleave(k, dim=0)
    hidden = hidden.repeat_interleave(k, dim=1)  # [L, B*K, H]
    cell = cell.repeat_interleave(k, dim=1)
    src_len = source_ids.shape[1]

    batch = len(sources)
    # Only beam 0 is alive at the start, so the first step does not pick K copies of one token.
    scores = torch.full((batch, k), float("-inf"), device=device)
    scores[:, 0] = 0.0
    history = torch.empty((batch * k, 0), dtype=torch.long, device=device)  # [B*K, t]
    attention_history = torch.empty((batch * k, 0, src_len), device=device) if return_attention else None
    previous = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    # (normalised score, log_prob, tokens, attention) per original sentence
    finished: list[list[tuple[float, float, list[int], np.ndarray | None]]] = [[] for _ in sources]
    step_limits = [max_decode_steps(len(ids), max_length_cap) for ids in sources]
    active: list[int | None] = list(range(batch))  # original sentence per position; None once done
    step = 0
    while True:
        n_active = len(active)
        log_probs, hidden, cell, attention = model.decode_step(
            previous, hidden, cell, memory, memory_keys, source_mask
        )
        step += 1
        vocab = log_probs.shape[-1]
        if loop_marks is not None and history.shape[1] >= 2:
            _ban_loops(log_probs, history[:, -RECENT_TOKENS:].tolist(), loop_marks)
        candidates = (scores.view(-1, 1) + log_probs.float()).view(n_active, k * vocab)  # [B, K*V]
        top_scores, top_index = candidates.topk(2 * k, dim=1)  # [B, 2K]
        top_beams = torch.div(top_index, vocab, rounding_mode="floor")
        top_tokens = top_index % vocab
        top_is_eos = top_tokens == EOS_ID
        if attention_history is not None:
            attention_history = torch.cat([attention_history, attention.float().unsqueeze(1)], dim=1)

        finishing = (top_is_eos[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist()
        if finishing:
            top_scores_list, top_beams_list = top_scores.tolist(), top_beams.tolist()
            for position, rank in finishing:
                sentence = active[position]
                if sentence is None:
                    continue
                row = position * k + top_beams_list[position][rank]
                _finish(finished[sentence], history[row], attention_history, row, len(sources[sentence]),
                        top_scores_list[position][rank], step, length_penalty_alpha, ended_with_eos=True)

        alive_scores, alive_rank = top_scores.masked_fill(top_is_eos, float("-inf")).topk(k, dim=1)
        alive_beams = top_beams.gather(1, alive_rank)  # [B, K]
        alive_tokens = top_tokens.gather(1, alive_rank)
        rows = (torch.arange(n_active, device=device).unsqueeze(1) * k + alive_beams).view(-1)  # [B*K]
        history = torch.cat([history[rows], alive_tokens.view(-1, 1)], dim=1)
        if attention_history is not None:
            attention_history = attention_history[rows]
        hidden, cell = hidden[:, rows], cell[:, rows]
        scores, previous = alive_scores, alive_tokens.view(-1)

        alive_scores_list: list[list[float]] | None = None
        has_alive = torch.isfinite(scores).any(dim=1).tolist()
        for position, sentence in enumerate(active):
            if sentence is None:
                continue
            if len(finished[sentence]) >= k or not has_alive[position]:
                active[position] = None
                continue
            if step < step_limits[sentence]:
                continue
            alive_scores_list = alive_scores_list or scores.tolist()
            for beam in range(k):
                if np.isfinite(alive_scores_list[position][beam]):
                    row = position * k + beam
                    _finish(finished[sentence], history[row], attention_history, row, len(sources[sentence]),
                            alive_scores_list[position][beam], step, length_penalty_alpha,
                            ended_with_eos=False)
            active[position] = None
        live = [position for position, sentence in enumerate(active) if sentence is not None]
        if not live:
            break
        if _worth_compacting(n_active, len(live)):
            sentence_index = torch.as_tensor(live, dtype=torch.long, device=device)
            row_index = (sentence_index.unsqueeze(1) * k + torch.arange(k, device=device)).view(-1)
            memory, memory_keys = memory[row_index], memory_keys[row_index]
            source_mask = source_mask[row_index]
            hidden, cell = hidden[:, row_index], cell[:, row_index]
            history, previous = history[row_index], previous[row_index]
            if attention_history is not None:
                attention_history = attention_history[row_index]
            scores = scores[sentence_index]
            active = [active[position] for position in live]

    results = []
    for hypotheses in finished:
        if not hypotheses:  # only when the model gives -inf to every token but eos from the start
            results.append(Hypothesis(token_ids=[], log_prob=float("-inf"),
                                      attention=np.zeros((0, 0), np.float32) if return_attention else None))
            continue
        _, log_prob, token_ids, attention_matrix = max(hypotheses, key=lambda hypothesis: hypothesis[0])
        results.append(Hypothesis(token_ids=token_ids, log_prob=log_prob, attention=attention_matrix))
    return results


def _worth_compacting(rows: int, live_rows: int) -> bool:
    """Drop done rows once they are a quarter of the batch (bounds both copies and wasted steps)."""
    return (rows - live_rows) * COMPACT_WHEN_DONE_ONE_IN >= rows


def _finish(
    hypotheses: list[tuple[float, float, list[int], np.ndarray | None]], tokens: torch.Tensor,
    attention_history: torch.Tensor | None, row: int, source_length: int, log_prob: float, steps: int,
    alpha: float, *, ended_with_eos: bool,
) -> None:
    """Record a finished hypothesis. For an eos ending, `tokens` is the history before the eos step
    and `row` indexes the pre-reorder attention history; otherwise both already include the step."""
    attention_matrix = None
    if attention_history is not None:
        attention_matrix = attention_history[row, :steps, :source_length].cpu().numpy()
    token_ids = tokens.tolist()
    if ended_with_eos:
        assert len(token_ids) == steps - 1
    hypotheses.append((log_prob / length_penalty(steps, alpha), log_prob, token_ids, attention_matrix))


def translate_ids(
    model: Seq2Seq, sources: Sequence[Sequence[int]], *, beam_size: int = 1,
    length_penalty_alpha: float = DEFAULT_LENGTH_PENALTY_ALPHA, max_length_cap: int = DEFAULT_MAX_LENGTH_CAP,
    return_attention: bool = False, batch_sentences: int | None = None, loop_marks: Sequence[int] | None = None,
) -> list[Hypothesis]:
    """Decode many sources (each pieces + [eos]) in length-sorted batches; results in input order.

    beam_size 1 runs greedy search; `loop_marks` (Codec.loop_marks): the service's loop rule applies.
    Runs in eval mode without autograd on the model's device and restores the model's training flag
    afterwards.
    """
    if not sources:
        return []
    if batch_sentences is None:
        batch_sentences = GREEDY_BATCH_SENTENCES if beam_size == 1 else max(1, BEAM_BATCH_ROWS // beam_size)
    # Longest first: similar lengths share a batch (little padding) and the first batch shows the
    # peak memory at once.
    order = sorted(range(len(sources)), key=lambda index: -len(sources[index]))
    results: list[Hypothesis | None] = [None] * len(sources)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_sentences):
                chunk = order[start : start + batch_sentences]
                batch_sources = [sources[index] for index in chunk]
                if beam_size == 1:
                    decoded = greedy_batch(model, batch_sources, max_length_cap=max_length_cap,
                                           return_attention=return_attention, loop_marks=loop_marks)
                else:
                    decoded = beam_batch(model, batch_sources, beam_size=beam_size,
                                         length_penalty_alpha=length_penalty_alpha,
                                         max_length_cap=max_length_cap, return_attention=return_attention,
                                         loop_marks=loop_marks)
                for index, hypothesis in zip(chunk, decoded, strict=True):
                    results[index] = hypothesis
    finally:
        model.train(was_training)
    return [hypothesis for hypothesis in results if hypothesis is not None]


def make_translate_fn(
    model: Seq2Seq, codec: Codec, *, beam_size: int = 1,
    length_penalty_alpha: float = DEFAULT_LENGTH_PENALTY_ALPHA, max_length_cap: int = DEFAULT_MAX_LENGTH_CAP,
    loop_rule: bool = True,
) -> Callable[[list[str]], list[str]]:
    """texts -> translations, the interface training.evaluate scores: decoded as the service decodes
    (its loop rule included unless `loop_rule` is False), so that the scores are those of what clients get."""
    marks = codec.loop_marks() if loop_rule else None

    def translate(texts: list[str]) -> list[str]:
        hypotheses = translate_ids(
            model, [codec.source_ids(text) for text in texts], beam_size=beam_size,
            length_penalty_alpha=length_penalty_alpha, max_length_cap=max_length_cap, loop_marks=marks,
        )
        return [codec.decode(hypothesis.token_ids) for hypothesis in hypotheses]

    return translate
