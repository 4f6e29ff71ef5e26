"""The training loop: teacher forcing, label-smoothed cross-entropy, Adam, gradient clipping,
plateau learning-rate decay, early stopping, checkpoint/resume, CUDA + mixed precision when present.

Reads top to bottom; imports torch, the model, the config and model_store's codec; never service.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from model_store.codec import Codec
from training.checkpoint import save_checkpoint
from training.config import ModelConfig, TrainConfig, model_config_from_dict
from training.model import Seq2Seq

CHECKPOINT_LAST = "last.pt"
CHECKPOINT_BEST = "best.pt"


@dataclass(frozen=True)
class EncodedPair:
    source: list[int]  # pieces + [eos]
    target: list[int]  # [bos] + pieces + [eos]


def read_pairs(path: Path, oversample: dict[str, int] | None = None) -> list[tuple[str, str]]:
    """(english, german) pairs of a corpus TSV (english<TAB>german<TAB>origin); a pair whose origin
    is in `oversample` appears that many times (to weight a scarce domain, e.g. everyday sentences)."""
    pairs = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) >= 2 and fields[0] and fields[1]:
                origin = fields[2] if len(fields) > 2 else ""
                pairs.extend([(fields[0], fields[1])] * (oversample or {}).get(origin, 1))
    return pairs


def encode_pairs(
    pairs: list[tuple[str, str]], codec: Codec, max_source_tokens: int, max_target_tokens: int
) -> list[EncodedPair]:
    encoded = []
    for source_text, target_text in pairs:
        source, target = codec.source_ids(source_text), codec.target_ids(target_text)
        if len(source) <= max_source_tokens and len(target) <= max_target_tokens:
            encoded.append(EncodedPair(source, target))
    return encoded


def make_batches(pairs: list[EncodedPair], batch_tokens: int, rng: random.Random | None) -> list[list[EncodedPair]]:
    """Bucket by length so padding stays small; each batch holds about `batch_tokens` target tokens.

    With an rng the order within similar lengths and the batch order are shuffled (training);
    without, batches are deterministic (validation).
    """
    order = list(range(len(pairs)))
    if rng is not None:
        rng.shuffle(order)
    order.sort(key=lambda i: (len(pairs[i].source), len(pairs[i].target)))  # stable: shuffled ties
    batches: list[list[EncodedPair]] = []
    current: list[EncodedPair] = []
    longest = 0
    for index in order:
        pair = pairs[index]
        size = max(len(pair.source), len(pair.target))
        if current and max(longest, size) * (len(current) + 1) > batch_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(pair)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate(batch: list[EncodedPair], pad_id: int, device: torch.device) -> dict[str, torch.Tensor]:
    src_len = max(len(p.source) for p in batch)
    tgt_len = max(len(p.target) for p in batch)
    source = torch.full((len(batch), src_len), pad_id, dtype=torch.long)
    target = torch.full((len(batch), tgt_len), pad_id, dtype=torch.long)
    for row, pair in enumerate(batch):
        source[row, : len(pair.source)] = torch.tensor(pair.source)
        target[row, : len(pair.target)] = torch.tensor(pair.target)
    return {
        "source_ids": source.to(device),
        "source_lengths": torch.tensor([len(p.source) for p in batch], dtype=torch.long),  # stays on CPU
        "target_in": target[:, :-1].to(device),  # [B, T-1] teacher-forcing inputs
        "target_out": target[:, 1:].to(device),  # [B, T-1] what each step must predict
    }


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device=cuda requested but torch sees no CUDA device")
    return torch.device(requested)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def batch_loss(
    model: Seq2Seq, batch: dict[str, torch.Tensor], label_smoothing: float, pad_id: int
) -> tuple[torch.Tensor, int]:
    """Mean label-smoothed cross-entropy over real (non-pad) target tokens, and their count."""
    logits, _ = model(batch["source_ids"], batch["source_lengths"], batch["target_in"])  # [B, T, V]
    target = batch["target_out"]
    loss = F.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1),
        ignore_index=pad_id, label_smoothing=label_smoothing,
    )
    return loss, int((target != pad_id).sum())


@torch.no_grad()
def validation_loss(model: Seq2Seq, batches: list[list[EncodedPair]], device: torch.device, pad_id: int) -> float:
    """Token-weighted mean cross-entropy (no smoothing), so it is comparable across runs."""
    model.eval()
    total, tokens = 0.0, 0
    for pairs in batches:
        loss, count = batch_loss(model, collate(pairs, pad_id, device), 0.0, pad_id)
        total += float(loss) * count
        tokens += count
    model.train()
    return total / max(tokens, 1)


@dataclass
class TrainState:
    """Progress that a resumed run continues from (saved in every checkpoint).

    A resumed run trains on exactly the batches, in the same order and with the same dropout masks,
    that the run would have trained on without the interruption: each epoch's batch order depends on
    the seed and the epoch only (rebuilt on resume, the `batches_done` already trained skipped), and
    the random generators go on from the states saved with the checkpoint.
    """

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps, all runs together
    best_valid_loss: float = math.inf
    validations_without_improvement: int = 0
    learning_rate: float = 0.0
    elapsed_seconds: float = 0.0  # training time of all runs together (each run has its own time budget)
    history: list[dict[str, float]] | None = None
    batches_done: int = 0  # of epoch `epoch`'s batches, trained before the checkpoint (0: at its start)
    batches_in_epoch: int = 0  # how many that epoch has: a resume with other data or batching starts it anew
    rng_states: dict[str, Any] | None = None  # "torch", "python" and, on CUDA, "cuda" (one per device)


def _epoch_batches(pairs: list[EncodedPair], config: TrainConfig, epoch: int) -> list[list[EncodedPair]]:
    """The training batches of `epoch`, in their order: a function of the seed and the epoch alone,
    so that a resumed run rebuilds the order of the epoch it was interrupted in."""
    return make_batches(pairs, config.batch_tokens, random.Random(config.seed + epoch))


def _rng_states(device: torch.device) -> dict[str, Any]:
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _restore_rng_states(states: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(states["torch"].cpu())  # torch.load(map_location=cuda) may have moved it
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if device.type == "cuda":
        cuda = states.get("cuda")
        if cuda is not None and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([state.cpu() for state in cuda])
        else:
            print("warning: the checkpoint has no CUDA random state for these devices: dropout masks on "
                  "the GPU differ from an uninterrupted run's", file=sys.stderr)


def _resume_state(saved: dict[str, Any], path: Path, device: torch.device) -> TrainState:
    """The TrainState of a checkpoint, its random generators restored; an older checkpoint (without
    the position in the epoch or the random state) resumes at the start of its epoch, with a warning."""
    known = {f.name for f in fields(TrainState)}
    state = TrainState(**{key: value for key, value in saved.items() if key in known})
    if "batches_done" in saved and state.rng_states is not None:
        _restore_rng_states(state.rng_states, device)
    else:
        state.batches_done, state.batches_in_epoch = 0, 0
        print(f"warning: {path} was written without its position in the epoch or its random state "
              f"(an older trainer): epoch {state.epoch + 1} starts again from its first batch, "
              "so batches of it trained before the interruption are trained again", file=sys.stderr)
    return state


def _save(path: Path, model: Seq2Seq, optimizer: torch.optim.Optimizer, state: TrainState,
          config: TrainConfig) -> None:
    save_checkpoint(path, model, config, config.tokenizer_model, optimizer_state=optimizer.state_dict(),
                    train_state=asdict(state), torch_version=str(torch.__version__))


def train(model_config: ModelConfig, config: TrainConfig, resume: bool = True) -> Path:
    """Train until early stopping, the epoch limit or the time budget; return the best checkpoint."""
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(config.seed)
    device = pick_device(config.device)
    if device.type == "cpu" and config.threads > 0:
        torch.set_num_threads(config.threads)
    use_amp = config.amp and device.type == "cuda"
    codec = Codec(Path(config.tokenizer_model))
    if codec.vocab_size != model_config.vocab_size:
        raise ValueError(f"tokenizer has {codec.vocab_size} pieces, model config says {model_config.vocab_size}")

    corpus = Path(config.corpus_dir)
    train_text = read_pairs(corpus / "train.tsv", config.oversample)
    if config.max_train_pairs:
        train_text = train_text[: config.max_train_pairs]
    train_pairs = encode_pairs(train_text, codec, config.max_source_tokens, config.max_target_tokens)
    valid_pairs = encode_pairs(read_pairs(corpus / "valid.tsv"), codec, 10**6, 10**6)
    valid_batches = make_batches(valid_pairs, config.batch_tokens, rng=None)
    print(f"train pairs {len(train_pairs)} (of {len(train_text)}), valid pairs {len(valid_pairs)}, "
          f"device {device}, amp {use_amp}", file=sys.stderr)

    model = Seq2Seq(model_config).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    state = TrainState(learning_rate=config.learning_rate, history=[])
    last_path, best_path = out_dir / CHECKPOINT_LAST, out_dir / CHECKPOINT_BEST
    if resume and last_path.exists():
        checkpoint = torch.load(last_path, map_location=device, weights_only=False)
        if model_config_from_dict(checkpoint["model_config"]) != model_config:
            raise ValueError(f"{last_path} was trained with another model config; use a new out_dir")
        model.load_state_dict(checkpoint["model_state"])
        optimizer.load_state_dict(checkpoint["optimizer_state"])
        state = _resume_state(checkpoint["train_state"], last_path, device)
        print(f"resumed from {last_path} at epoch {state.epoch} (+{state.batches_done} batches), "
              f"step {state.step}, after {state.elapsed_seconds / 60:.1f} min of training", file=sys.stderr)
        if state.validations_without_improvement >= config.early_stopping_patience:
            print(f"{last_path} had already stopped early: nothing to train (--restart to start over)",
                  file=sys.stderr)
            return best_path
    for group in optimizer.param_groups:
        group["lr"] = state.learning_rate
    (out_dir / "config.json").write_text(
        json.dumps({"model": asdict(model_config), "train": asdict(config)}, indent=2), encoding="utf-8"
    )

    # The time budget bounds this run; a resumed run gets a budget of its own. state.elapsed_seconds
    # (checkpointed, reported by publish) adds this run's training time to the earlier runs'.
    budget_seconds = config.time_budget_minutes * 60 if config.time_budget_minutes else math.inf
    started, elapsed_before = time.monotonic(), state.elapsed_seconds

    def validate_and_checkpoint(partial_epoch: bool) -> bool:
        """Validate, decay the lr on a plateau, checkpoint; True when early stopping says stop."""
        state.elapsed_seconds = elapsed_before + time.monotonic() - started
        valid = validation_loss(model, valid_batches, device, model_config.pad_id)
        improved = valid < state.best_valid_loss
        entry = {"epoch": state.epoch + (0.5 if partial_epoch else 0.0), "step": state.step,
                 "valid_loss": round(valid, 4), "learning_rate": state.learning_rate,
                 "elapsed_seconds": round(state.elapsed_seconds, 1)}
        assert state.history is not None
        state.history.append(entry)
        print(f"validation: {json.dumps(entry)}{' (best)' if improved else ''}", file=sys.stderr, flush=True)
        if improved:
            state.best_valid_loss, state.validations_without_improvement = valid, 0
        else:
            state.validations_without_improvement += 1
            if state.validations_without_improvement % config.lr_patience == 0:
                state.learning_rate = max(state.learning_rate * config.lr_decay, config.min_learning_rate)
                for group in optimizer.param_groups:
                    group["lr"] = state.learning_rate
        state.rng_states = _rng_states(device)  # validation draws no random numbers (eval mode)
        _save(last_path, model, optimizer, state, config)
        if improved:
            _save(best_path, model, optimizer, state, config)
        return state.validations_without_improvement >= config.early_stopping_patience

    model.train()
    stop = False
    while state.epoch < config.epochs and not stop:
        # A resumed run rebuilds its interrupted epoch's order and skips the batches already trained.
        batches = _epoch_batches(train_pairs, config, state.epoch)
        first = state.batches_done
        if first and (first > len(batches) or state.batches_in_epoch != len(batches)):
            print(f"warning: epoch {state.epoch + 1} now has {len(batches)} batches, the checkpoint's "
                  f"{state.batches_in_epoch} (other training data or batch size?): it starts again from "
                  "its first batch", file=sys.stderr)
            first = 0
        state.batches_done, state.batches_in_epoch = first, len(batches)
        progress = tqdm(batches[first:], desc=f"epoch {state.epoch + 1}", file=sys.stderr, mininterval=5.0,
                        initial=first, total=len(batches), disable=not sys.stderr.isatty())
        window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
        for step_in_epoch, pairs in enumerate(progress, start=first):
            batch = collate(pairs, model_config.pad_id, device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
                loss, tokens = batch_loss(model, batch, config.label_smoothing, model_config.pad_id)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            # RNNs explode now and then: clip the global gradient norm.
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
            optimizer.step()
            state.step += 1
            state.batches_done = step_in_epoch + 1
            window_loss += loss.item() * tokens
            window_tokens += tokens
            if config.log_every_steps and state.step % config.log_every_steps == 0:
                seconds = time.monotonic() - window_start
                progress.set_postfix(loss=f"{window_loss / window_tokens:.3f}",
                                     tok_s=f"{window_tokens / max(seconds, 1e-9):.0f}")
                if not sys.stderr.isatty():
                    print(f"epoch {state.epoch + 1} step {state.step} ({step_in_epoch + 1}/{len(batches)}) "
                          f"loss {window_loss / window_tokens:.3f} "
                          f"tokens/s {window_tokens / max(seconds, 1e-9):.0f}", file=sys.stderr, flush=True)
                window_loss, window_tokens, window_start = 0.0, 0, time.monotonic()
            if time.monotonic() - started > budget_seconds:
                print(f"time budget reached ({config.time_budget_minutes:g} min this run; "
                      f"{(elapsed_before + time.monotonic() - started) / 60:.1f} min all runs)", file=sys.stderr)
                validate_and_checkpoint(partial_epoch=True)
                stop = True
                break
            if config.validate_every_steps and state.step % config.validate_every_steps == 0 \
                    and step_in_epoch + 1 < len(batches):
                stop = validate_and_checkpoint(partial_epoch=True)
                if stop:
                    break
        else:
            state.epoch, state.batches_done = state.epoch + 1, 0
            stop = validate_and_checkpoint(partial_epoch=False)
    if state.validations_without_improvement >= config.early_stopping_patience:
        print(f"early stopping at epoch {state.epoch}, step {state.step}", file=sys.stderr)
    return best_path

