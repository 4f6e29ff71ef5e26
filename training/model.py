"""LSTM sequence-to-sequence translator with attention (Bahdanau / Luong), in plain PyTorch.

`encode` and `decode_step` are exactly the two ONNX graphs of model_store's contract; `forward`
is the teacher-forced training path built from the same parts. Imports only torch and the config.
"""

from __future__ import annotations

import torch
from torch import nn

from training.config import ModelConfig


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """nn.Linear as MatMul(+Add): exports as ONNX MatMul, which dynamic int8 quantization handles
    (it ignores the Gemm that F.linear on 2-D inputs exports to)."""
    y = torch.matmul(x, layer.weight.t())
    return y if layer.bias is None else y + layer.bias


def masked_softmax(scores: torch.Tensor, source_mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis where source_mask is True; padding gets exactly 0."""
    # [..., src_len]; source_mask broadcasts from [batch, 1, src_len] or [batch, src_len]
    scores = scores.masked_fill(~source_mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1) * source_mask.to(scores.dtype)


class Seq2Seq(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.source_embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.pad_id)
        self.target_embedding = nn.Embedding(c.vocab_size, c.embedding_dim, padding_idx=c.pad_id)
        rnn_class = nn.LSTM if c.encoder_cell == "lstm" else nn.GRU
        self.encoder_rnn = rnn_class(
            c.embedding_dim, c.encoder_hidden, num_layers=c.encoder_layers, bidirectional=True,
            batch_first=True, dropout=c.dropout if c.encoder_layers > 1 else 0.0,
        )
        # Bridge: the top encoder layer's final forward+backward states -> every decoder layer's h0, c0.
        self.bridge_hidden = nn.Linear(c.memory_size, c.decoder_layers * c.decoder_hidden)
        self.bridge_cell = nn.Linear(c.memory_size, c.decoder_layers * c.decoder_hidden)
        # Bahdanau feeds the context into the RNN input; Luong attends after the RNN.
        decoder_input = c.embedding_dim + (c.memory_size if c.attention == "bahdanau" else 0)
        self.decoder_rnn = nn.LSTM(
            decoder_input, c.decoder_hidden, num_layers=c.decoder_layers, batch_first=True,
            dropout=c.dropout if c.decoder_layers > 1 else 0.0,
        )
        if c.attention in ("luong_general", "bahdanau"):
            self.key_projection: nn.Linear | None = nn.Linear(c.memory_size, c.decoder_hidden, bias=False)
        else:
            self.key_projection = None
        if c.attention == "bahdanau":
            self.query_projection = nn.Linear(c.decoder_hidden, c.decoder_hidden, bias=False)
            self.score_vector = nn.Linear(c.decoder_hidden, 1, bias=False)
        context_size = 0 if c.attention == "none" else c.memory_size
        self.attentional_projection = nn.Linear(c.decoder_hidden + context_size, c.attentional_size, bias=False)
        self.output_projection = nn.Linear(c.attentional_size, c.vocab_size)
        if c.tie_embeddings:
            self.target_embedding.weight = self.source_embedding.weight
            self.output_projection.weight = self.source_embedding.weight
        self.dropout = nn.Dropout(c.dropout)

    # ---- encoder graph -------------------------------------------------------------------------
    def encode(
        self, source_ids: torch.Tensor, source_lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> memory [B,S,M], memory_keys [B,S,H], hidden [L,B,H], cell [L,B,H]."""
        c = self.config
        batch, src_len = source_ids.shape
        embedded = self.dropout(self.source_embedding(source_ids))  # [B, S, E]
        # Packing makes every row's states independent of the padding (and of its batch mates),
        # which serving's batching relies on for identical results in every batching mode.
        packed = nn.utils.rnn.pack_padded_sequence(
            embedded, source_lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        packed_out, final = self.encoder_rnn(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(packed_out, batch_first=True, total_length=src_len)
        final_hidden = final[0] if isinstance(final, tuple) else final  # [layers*2, B, He]
        top = final_hidden.view(c.encoder_layers, 2, batch, c.encoder_hidden)[-1]  # [2, B, He]
        summary = torch.cat([top[0], top[1]], dim=-1)  # [B, M]
        hidden = torch.tanh(linear(summary, self.bridge_hidden))  # [B, L*H]
        cell = linear(summary, self.bridge_cell)
        hidden = hidden.view(batch, c.decoder_layers, c.decoder_hidden).transpose(0, 1).contiguous()
        cell = cell.view(batch, c.decoder_layers, c.decoder_hidden).transpose(0, 1).contiguous()
        memory_keys = self._memory_keys(memory)  # [B, S, H]
        return memory, memory_keys, hidden, cell

    def _memory_keys(self, memory: torch.Tensor) -> torch.Tensor:
        if self.key_projection is not None:
            return linear(memory, self.key_projection)
        if self.config.attention == "luong_dot":
            return memory
        # `none`: no keys; a zero-width tensor keeps the graph's output list uniform.
        return memory[:, :, :0]

    # ---- attention -----------------------------------------------------------------------------
    def _attend(
        self, query: torch.Tensor, memory: torch.Tensor, memory_keys: torch.Tensor,
        source_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B,T,H] -> context [B,T,M], weights [B,T,S]."""
        if self.config.attention == "bahdanau":
            # [B,T,1,H] + [B,1,S,H] -> [B,T,S]
            energy = torch.tanh(linear(query, self.query_projection).unsqueeze(2) + memory_keys.unsqueeze(1))
            scores = linear(energy, self.score_vector).squeeze(-1)
        else:
            scores = torch.matmul(query, memory_keys.transpose(1, 2))  # [B, T, S]
        weights = masked_softmax(scores, source_mask.unsqueeze(1))
        return torch.matmul(weights, memory), weights

    def _uniform_weights(self, source_mask: torch.Tensor, steps: int) -> torch.Tensor:
        """`none` attends to nothing; report a uniform distribution so every row still sums to 1."""
        mask = source_mask.to(torch.float32)
        weights = mask / mask.sum(dim=-1, keepdim=True)  # [B, S]
        return weights.unsqueeze(1).expand(-1, steps, -1)

    def _output(self, rnn_out: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        """Attentional vector tanh(Wc [s; c]) -> logits [B,T,V]."""
        features = rnn_out if context is None else torch.cat([rnn_out, context], dim=-1)
        attentional = self.dropout(torch.tanh(linear(features, self.attentional_projection)))
        return linear(attentional, self.output_projection)

    # ---- decoder -------------------------------------------------------------------------------
    def _decode(
        self, target_in: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor, memory: torch.Tensor,
        memory_keys: torch.Tensor, source_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode target_in [B,T] -> logits [B,T,V], weights [B,T,S], hidden, cell."""
        embedded = self.dropout(self.target_embedding(target_in))  # [B, T, E]
        if self.config.attention == "bahdanau":
            # The query is the previous top-layer state, so Bahdanau must step through time.
            logits_steps, weight_steps = [], []
            for t in range(target_in.shape[1]):
                context, weights = self._attend(hidden[-1].unsqueeze(1), memory, memory_keys, source_mask)
                step_in = torch.cat([embedded[:, t : t + 1], context], dim=-1)  # [B, 1, E+M]
                rnn_out, (hidden, cell) = self.decoder_rnn(step_in, (hidden, cell))
                logits_steps.append(self._output(rnn_out, context))
                weight_steps.append(weights)
            return torch.cat(logits_steps, 1), torch.cat(weight_steps, 1), hidden, cell
        # Luong and none: the RNN runs over the whole target at once; attention follows in parallel.
        rnn_out, (hidden, cell) = self.decoder_rnn(embedded, (hidden, cell))  # [B, T, H]
        if self.config.attention == "none":
            return self._output(rnn_out, None), self._uniform_weights(source_mask, target_in.shape[1]), hidden, cell
        context, weights = self._attend(rnn_out, memory, memory_keys, source_mask)
        return self._output(rnn_out, context), weights, hidden, cell

    def decode_step(
        self, previous_tokens: torch.Tensor, hidden: torch.Tensor, cell: torch.Tensor,
        memory: torch.Tensor, memory_keys: torch.Tensor, source_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step for a batch: -> log_probs [B,V], next_hidden, next_cell [L,B,H], attention [B,S]."""
        logits, weights, hidden, cell = self._decode(
            previous_tokens.unsqueeze(1), hidden, cell, memory, memory_keys, source_mask
        )
        return torch.log_softmax(logits[:, 0].float(), dim=-1), hidden, cell, weights[:, 0]

    def forward(
        self, source_ids: torch.Tensor, source_lengths: torch.Tensor, target_in: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher forcing: -> logits [B,T,V], attention weights [B,T,S]."""
        memory, memory_keys, hidden, cell = self.encode(source_ids, source_lengths)
        source_mask = source_ids != self.config.pad_id  # [B, S]
        logits, weights, _, _ = self._decode(target_in, hidden, cell, memory, memory_keys, source_mask)
        return logits, weights


def source_mask_from_lengths(source_lengths: torch.Tensor, src_len: int) -> torch.Tensor:
    positions = torch.arange(src_len, device=source_lengths.device)
    return positions.unsqueeze(0) < source_lengths.unsqueeze(1)  # [B, S]
