"""The training loop: AdamW, warm-up then decay, validation, checkpoints, resume, DDP.

`train(config, out_dir)` writes into `out_dir`:

- `config.yaml`: the experiment config the run used;
- `log.csv`: one row per validation (step, epoch, learning rate, mean training loss
  since the previous validation, each field's validation loss, the total, tokens/s);
- `train_log.csv`: one row per optimiser step (step, epoch, loss, each field's loss,
  learning rate, gradient norm before clipping);
- `best/`: the checkpoint with the lowest validation loss so far;
- `last/`: the latest checkpoint plus `training_state.pt` (optimiser, scheduler, RNG
  states, data position, early-stopping counters) for `resume=True`;
- `tensorboard/`: the same figures as TensorBoard events, when `tensorboard` is installed.

Reproducibility: the weights are initialised from `seed`; the order of the training items
in epoch e is a permutation drawn from `numpy.random.default_rng([seed, e])` (with a
`data.mix`, the items the epoch draws, in that order: `epoch_permutation`), and the
dataset's own randomness is a pure function of (seed, epoch, index); dropout draws from
the torch generator, whose state is saved with the training state. So a run stopped at
step K and resumed computes the same losses as one that never stopped (exactly, on CPU).
The loop runs inside `torch.random.fork_rng`, so the caller's global RNG is left as it was.

Multi-process (DistributedDataParallel): start with `torchrun --nproc_per_node N -m mmt
train CONFIG`. Each optimiser step takes N * batch_size consecutive items of the epoch's
permutation and gives process r the r-th slice of batch_size; the last batch of an epoch
wraps around to the permutation's start (as `DistributedSampler` pads). Rank 0 writes
every file; validation losses are summed over processes. Backend: NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import contextlib
import csv
import gc
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmt.checkpoint import read_checkpoint_info, recover_directory, save_model
from mmt.config import ExperimentConfig, TrainingConfig, config_from_dict
from mmt.constants import FIELDS
from mmt.augment import step_takeover
from mmt.data import MusicDataset, collate, pitch_ranges
from mmt.encoding import Encoding
from mmt.errors import MMTError
from mmt.files import atomic_path, write_text_atomic
from mmt.locks import folder_lock
from mmt.mix import item_weights
from mmt.model import MusicTransformer, compute_loss
from mmt.prepared import PreparedData

STATE_FILE = "training_state.pt"
LOG_COLUMNS = ["step", "epoch", "lr", "train_loss", *(f"valid_{f}" for f in FIELDS), "valid_loss",
               "tokens_per_s", "steps_per_s", "elapsed_s", "best"]
TRAIN_LOG_COLUMNS = ["step", "epoch", "loss", *(f"loss_{f}" for f in FIELDS), "lr", "grad_norm"]


class TrainingError(MMTError, ValueError):
    """A training run cannot start or resume (bad out dir, incompatible checkpoint, no data)."""


# ---------------------------------------------------------------------- schedule
def lr_factor(step: int, config: TrainingConfig) -> float:
    """Multiplier of `config.lr` for the optimiser step with 0-based index `step`.

    Warm-up: (step + 1) / warmup_steps while step < warmup_steps. Then, with
    p = (step - warmup_steps) / (decay_end - warmup_steps) clipped to [0, 1] and
    m = min_lr_ratio, decay_end = decay_steps or max_steps:
    linear 1 - (1 - m) p; cosine m + (1 - m) (1 + cos(pi p)) / 2; constant 1.
    """
    warmup = config.warmup_steps
    if step < warmup:
        return (step + 1) / warmup
    if config.lr_schedule == "constant":
        return 1.0
    decay_end = config.decay_steps or config.max_steps
    span = decay_end - warmup
    progress = 1.0 if span <= 0 else min(max((step - warmup) / span, 0.0), 1.0)
    m = config.min_lr_ratio
    if config.lr_schedule == "linear":
        return 1.0 - (1.0 - m) * progress
    return m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * progress))


def init_weights(model: MusicTransformer, source: str) -> list[str]:
    """Copy the weights of checkpoint `source` (a directory or bundled name) into `model`.

    `source` must have `model`'s encoding, and every parameter it has must exist in `model`
    with the same shape (the same network shape); `model`'s parameters that `source` lacks
    keep their values. Into a model that ties weights (`ModelConfig.tie_pitch`) from one
    that does not, the shared table starts as the source's head (what the head learned is
    kept; the input side relearns to read it).
    Returns their names. Raises TrainingError otherwise.
    """
    from mmt.checkpoint import load_model

    try:
        loaded = load_model(source)
    except MMTError as error:
        raise TrainingError(f"training.init_from: {error}") from error
    if loaded.encoding != model.encoding:
        raise TrainingError(f"training.init_from {source}: its encoding differs from this run's (data.path's "
                            "encoding.json and data.anticipation must be those it was trained with)")
    if loaded.tied_weights and not model.tied_weights:
        raise TrainingError(f"training.init_from {source}: its pitch embedding and head are one table "
                            "(model.tie_pitch: true); set model.tie_pitch: true for this run too")
    weights, own = loaded.state_dict(), model.state_dict()
    for alias, owner in model.tied_weights.items():
        weights[owner] = weights[alias]
    unknown = [name for name in weights if name not in own]
    wrong = [f"{name} {tuple(weights[name].shape)} vs {tuple(own[name].shape)}" for name in weights
             if name in own and weights[name].shape != own[name].shape]
    if unknown or wrong:
        raise TrainingError(f"training.init_from {source}: its weights do not fit this model's config "
                            f"({'; '.join((unknown + wrong)[:3])})")
    model.load_state_dict(weights, strict=False)
    return [name for name in own if name not in weights]


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on the weight matrices only (not biases, norms, embeddings)."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue  # a tied table is met twice: it goes with the first module (the embedding)
            seen.add(id(param))
            if isinstance(module, nn.Linear) and name == "weight":
                decay.append(param)
            else:
                no_decay.append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


# ---------------------------------------------------------------------- data order
def epoch_permutation(n_items: int, seed: int, epoch: int, weights: np.ndarray | None = None) -> np.ndarray:
    """The order of the training items in `epoch`: a pure function of (seed, epoch, weights).

    Without weights, every item once, in a random order. With `weights` (one per item,
    `mmt.mix.item_weights`), item i is in the epoch with probability
    weights[i] / max(weights), at most once (so its augmentation, a function of the epoch,
    differs between its draws), in the same random order: items of the largest weight
    are in every epoch, and over many epochs each item is drawn in proportion to its weight.
    """
    order = np.random.default_rng([seed, epoch]).permutation(n_items)
    if weights is None:
        return order
    weights = np.asarray(weights, dtype=float)
    keep = np.random.default_rng([seed, epoch, 1]).random(n_items) < weights / weights.max()
    return order[keep[order]]


def epoch_batches(n_items: int, batch_size: int, world_size: int, rank: int, seed: int, epoch: int,
                  start_step: int = 0, weights: np.ndarray | None = None) -> list[list[int]]:
    """This process's batches of item indices for `epoch`, from step `start_step` of the epoch on.

    Step s uses items perm[s*W*B : (s+1)*W*B] of the epoch's order (`epoch_permutation`;
    W processes, B per process), process r taking the r-th block of B; the order is
    extended cyclically to fill the last step.
    """
    per_step = batch_size * world_size
    permutation = epoch_permutation(n_items, seed, epoch, weights)
    steps = steps_per_epoch(len(permutation), batch_size, world_size)
    order = np.resize(permutation, steps * per_step)
    return [order[s * per_step + rank * batch_size: s * per_step + (rank + 1) * batch_size].tolist()
            for s in range(start_step, steps)]


def steps_per_epoch(n_items: int, batch_size: int, world_size: int = 1) -> int:
    return max(1, math.ceil(n_items / (batch_size * world_size)))


# ---------------------------------------------------------------------- distributed
@dataclass
class _Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def sum_(self, tensor: Tensor) -> Tensor:
        if self.world_size > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def _setup_distributed(device_kind: str) -> _Dist:
    """Join the process group torchrun describes in the environment (or run alone)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return _Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    initialised_here = False
    if not dist.is_initialized():
        backend = "nccl" if device_kind == "cuda" else "gloo"
        if device_kind == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
        initialised_here = True
    return _Dist(rank, world_size, local_rank, initialised_here)


def _resolve_device(requested: str | None, config: TrainingConfig) -> str:
    choice = requested or config.device
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(f"device {choice!r} was asked for, but CUDA is not available")
    return choice


# ---------------------------------------------------------------------- logs
class _CsvLog:
    """An append-only CSV whose rows past a step are dropped when a run resumes."""

    def __init__(self, path: Path, columns: list[str], keep_through_step: int | None) -> None:
        self.path = path
        self.columns = columns
        if keep_through_step is None or not path.exists():
            with atomic_path(path) as tmp:
                tmp.write_text(",".join(columns) + "\n", encoding="utf-8")
        else:
            with open(path, newline="", encoding="utf-8") as f:
                rows = [row for row in csv.DictReader(f) if int(row["step"]) <= keep_through_step]
            with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        self.file = open(path, "a", newline="", encoding="utf-8")
        self.writer = csv.DictWriter(self.file, fieldnames=columns)

    def write(self, row: dict) -> None:
        self.writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_log(path: str | os.PathLike) -> list[dict]:
    """Rows of a `log.csv` or `train_log.csv` with numbers parsed (a cell missing from a short row is None)."""
    def parse(value: str | None):
        if value is None:
            return None
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                return value
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _tensorboard_writer(log_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(log_dir=str(log_dir))


# ---------------------------------------------------------------------- stop signals
@contextlib.contextmanager
def _stop_on_signals(flag: dict):
    """Turn SIGINT/SIGTERM into a request to stop after the current step (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}

    def handler(signum, frame):
        if flag["stop"]:  # a second signal stops at once
            raise KeyboardInterrupt
        flag["stop"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# ---------------------------------------------------------------------- the run
@dataclass
class TrainingResult:
    """What `train` did."""

    out_dir: Path
    step: int
    best_step: int | None
    best_valid_loss: float | None
    stopped_early: bool
    interrupted: bool
    tokens_per_s: float
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainState:
    """Where a run stands: what `training_state.pt` saves beside the optimiser and RNG states."""

    step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    best_loss: float | None = None
    best_step: int | None = None
    bad_validations: int = 0

    def improves(self, loss: float) -> bool:
        """Record a validation loss; True when it is the best so far."""
        if self.best_loss is None or loss < self.best_loss:
            self.best_loss, self.best_step, self.bad_validations = loss, self.step, 0
            return True
        self.bad_validations += 1
        return False

    def out_of_patience(self, patience: int | None) -> bool:
        return patience is not None and self.bad_validations >= patience


@dataclass
class _Since:
    """Training figures accumulated since the last validation."""

    tokens: float = 0.0
    seconds: float = 0.0
    steps: int = 0
    loss_sum: float = 0.0

    def add(self, tokens: float, seconds: float, loss: float) -> None:
        self.tokens += tokens
        self.seconds += seconds
        self.steps += 1
        self.loss_sum += loss


def _rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _load_state(path: Path) -> dict:
    """The saved training state; tensors and plain values only (no code runs from the file)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise TrainingError(f"{path}: no training state to resume from") from None
    except Exception as error:  # torch raises many types for a damaged or foreign pickle/zip
        raise TrainingError(f"{path}: damaged training state ({type(error).__name__}: {error})") from None


@torch.no_grad()
def evaluate(model: MusicTransformer, batches, device: torch.device, autocast, dist_info: _Dist | None = None
             ) -> dict[str, float]:
    """Token-weighted mean loss of each field (and the total) over `batches`, summed over processes."""
    model.eval()
    sums = torch.zeros(len(FIELDS) + 1, dtype=torch.float64, device=device)
    for batch in batches:
        codes, mask = batch["codes"].to(device), batch["mask"].to(device)
        with autocast():
            _, losses = compute_loss(model, codes, mask)
        count = mask[:, 1:].sum()
        sums[:-1] += torch.stack([losses[f].double() for f in FIELDS]) * count
        sums[-1] += count
    if dist_info is not None:
        dist_info.sum_(sums)
    count = sums[-1].item()
    if count == 0:
        raise TrainingError("the validation split produced no target rows")
    out = {f: sums[i].item() / count for i, f in enumerate(FIELDS)}
    out["total"] = sum(out[f] for f in FIELDS)
    return out


def train(
    config: ExperimentConfig,
    out_dir: str | os.PathLike,
    *,
    data_dir: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> TrainingResult:
    """Train a `MusicTransformer` as `config` says; see the module docstring for the files written.

    Args:
        config: the experiment (model, training and data sections are used).
        out_dir: the run's directory (locked while the run writes it).
        data_dir: a prepared directory; overrides `config.data.path`.
        resume: continue the run in `out_dir` from `last/` (the config's `max_steps` may
            be raised to train further; the model section must match).
        device: "cpu", "cuda" or "auto"; overrides `config.training.device`.
        progress: show a progress bar (on rank 0).
        threads: torch CPU threads; overrides `config.training.threads`.

    Returns:
        a `TrainingResult`; `interrupted` is True when SIGINT/SIGTERM stopped the run
        (after saving `last/`).
    """
    tc = config.training
    out_dir = Path(out_dir)
    data_path = data_dir if data_dir is not None else config.data.path
    if data_path is None:
        raise TrainingError(f"config {config.name!r} names no data directory: set data.path or pass --data")
    data_path = Path(data_path)
    device_kind = _resolve_device(device, tc)
    dist_info = _setup_distributed("cuda" if device_kind.startswith("cuda") else "cpu")
    try:
        if device_kind.startswith("cuda") and dist_info.world_size > 1:
            torch_device = torch.device("cuda", dist_info.local_rank)
        else:
            torch_device = torch.device(device_kind)
        rng_devices = [torch_device] if torch_device.type == "cuda" else []
        saved_threads = torch.get_num_threads()
        threads = threads if threads is not None else tc.threads
        if threads is not None:
            torch.set_num_threads(threads)
        lock = contextlib.nullcontext()
        if dist_info.is_main:
            out_dir.mkdir(parents=True, exist_ok=True)
            lock = folder_lock(out_dir, "mmt train", TrainingError, print)
        try:
            with lock, torch.random.fork_rng(devices=rng_devices):
                run = _Run(config, out_dir, data_path, resume, torch_device, progress, dist_info)
                result = run.loop()
                del run  # its DDP reducer holds the process group: freed here, while every rank is alive (below)
        finally:
            torch.set_num_threads(saved_threads)
    except BaseException:
        if dist_info.initialised_here:  # no barrier: the other ranks may never reach one
            dist.destroy_process_group()
        raise
    if dist_info.initialised_here:
        # The DDP reducer is freed and the ranks meet before they tear the group down: a reducer
        # freed after destroy_process_group, when the other rank had exited, hung in the gloo
        # process group's destructor (joining its threads; seen in CI, rank 1, via py-spy).
        gc.collect()
        dist_info.barrier()
        dist.destroy_process_group()
    return result


class _Run:
    """One training run: its fixed parts (data, model, optimiser, logs) and the named steps of the loop."""

    def __init__(self, config: ExperimentConfig, out_dir: Path, data_path: Path, resume: bool,
                 device: torch.device, progress: bool, dist_info: _Dist) -> None:
        self.config, self.tc = config, config.training
        self.out_dir, self.data_path, self.device, self.dist = out_dir, data_path, device, dist_info
        self.last_dir, self.best_dir = out_dir / "last", out_dir / "best"
        self.progress = progress
        saved = self._saved_state() if resume else self._check_fresh()
        self._data(saved)
        self._model(saved)
        self.state = TrainState()
        self.resumed = saved is not None
        if self.resumed:
            self._restore(saved)
        self.use_bf16 = self.tc.bf16 and device.type == "cuda"
        self.history: list[dict] = []
        self.stop = {"stop": False}

    # ---- setup
    def _check_fresh(self) -> None:
        """Refuse a folder that holds a resumable run; one that crashed before its first checkpoint starts afresh."""
        if self.dist.is_main:  # puts back a swap cut short, removes a dead writer's temporary folders
            recover_directory(self.last_dir)
            recover_directory(self.best_dir)
        if (self.last_dir / STATE_FILE).exists():
            raise TrainingError(
                f"{self.out_dir}: already holds a training run; pass --resume to continue it or choose another --out"
            )
        if (self.out_dir / "log.csv").exists() and self.dist.is_main:
            print(f"mmt train: {self.out_dir}: an earlier run stopped before its first checkpoint; starting afresh")

    def _saved_state(self) -> dict:
        if self.dist.is_main and recover_directory(self.last_dir):
            print(f"mmt train: {self.last_dir}: restored the previous checkpoint (a crash cut its replacement short)")
        self.dist.barrier()
        if not (self.last_dir / STATE_FILE).exists():
            raise TrainingError(f"{self.last_dir}: nothing to resume (no {STATE_FILE}); run without --resume")
        state = _load_state(self.last_dir / STATE_FILE)
        saved_model = config_from_dict(state["config"], source=str(self.last_dir / STATE_FILE)).model
        if saved_model != self.config.model:
            raise TrainingError(
                f"{self.last_dir}: the checkpoint's model section {saved_model} differs from the config's "
                f"{self.config.model}; resume with the config the run started with"
            )
        return state

    def _data(self, saved: dict | None) -> None:
        config, tc, data_path = self.config, self.tc, self.data_path
        encoding = PreparedData(data_path).encoding
        if config.data.augmentation.controls > 0:  # the checkpoint's encoding knows control rows and where they go
            encoding = replace(encoding, anticipation=config.data.anticipation)
        self.train_set = MusicDataset(data_path, config.data.train_split, encoding, config.data_max_seq_len,
                                      max_beat=config.data.max_beat, augment=config.data.item_augmentation,
                                      seed=tc.seed)
        self.encoding: Encoding = self.train_set.encoding
        self.valid_set = MusicDataset(data_path, config.data.valid_split, self.encoding, config.data_max_seq_len,
                                      max_beat=config.data.max_beat, seed=tc.seed)
        for split, dataset in (("training", self.train_set), ("validation", self.valid_set)):
            if len(dataset) == 0:
                raise TrainingError(f"{data_path / (dataset.split + '.txt')}: the {split} split is empty")
        self.weights = item_weights(self.train_set.ids, config.data.mix,
                                    f"data.mix (training split of {data_path})")
        if saved is not None:
            info = read_checkpoint_info(self.last_dir)
            if Encoding.from_dict(info["encoding"]) != self.encoding:
                raise TrainingError(f"{self.last_dir}: the checkpoint's encoding differs from "
                                    f"{data_path / 'encoding.json'} with the config's data.controls and anticipation")
        items = list(range(len(self.valid_set)))
        if tc.valid_batches is not None:
            items = items[: tc.valid_batches * tc.batch_size]
        self.valid_items = items[self.dist.rank::self.dist.world_size]
        self.loader_generator = torch.Generator().manual_seed(tc.seed)  # keeps DataLoader off the global RNG

    def _model(self, saved: dict | None) -> None:
        tc = self.tc
        torch.manual_seed(tc.seed)
        self.model = MusicTransformer(self.config.model, self.encoding).to(self.device)
        self.model.sampling = self.config.sampling
        self.model.pitch_ranges = pitch_ranges(self.train_set.data, self.train_set.ids, self.encoding,
                                               seed=tc.seed)
        if saved is not None:
            from mmt.checkpoint import load_model

            self.model.load_state_dict(load_model(self.last_dir).state_dict())
        elif tc.init_from is not None:
            init_weights(self.model, tc.init_from)
        torch.manual_seed(tc.seed + 1 + self.dist.rank)  # dropout stream, distinct per process
        self.optimizer = make_optimizer(self.model, tc)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, tc))
        self.ddp_model = self.model
        if self.dist.world_size > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _restore(self, saved: dict) -> None:
        tc, state, world, rank = self.tc, self.state, self.dist.world_size, self.dist.rank
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        state.step, state.epoch = saved["step"], saved["epoch"]
        state.best_loss, state.best_step = saved["best_valid_loss"], saved["best_step"]
        state.bad_validations = saved["bad_validations"]
        if saved["world_size"] == world:
            state.epoch_step = saved["epoch_step"]
            _set_rng_state(saved["rng_states"][rank], self.device)
        else:  # same items, but dropout cannot replay exactly with another process count
            state.epoch_step = saved["items_into_epoch"] // (tc.batch_size * world)
            torch.manual_seed(tc.seed + 1 + rank + 1000 * state.step)

    def _open_logs(self, resumed: bool) -> None:
        self.log = self.train_log = self.writer = None
        if not self.dist.is_main:
            return
        import yaml

        write_text_atomic(self.out_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False))
        keep = self.state.step if resumed else None
        self.log = _CsvLog(self.out_dir / "log.csv", LOG_COLUMNS, keep)
        self.train_log = _CsvLog(self.out_dir / "train_log.csv", TRAIN_LOG_COLUMNS, keep)
        if self.tc.tensorboard:
            self.writer = _tensorboard_writer(self.out_dir / "tensorboard")
            if self.writer is None and not resumed:
                print("mmt train: tensorboard is not installed; writing log.csv only")

    def _close_logs(self) -> None:
        for log in (self.log, self.train_log, self.writer):
            if log is not None:
                log.close()

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.use_bf16 else contextlib.nullcontext()

    def loader(self, dataset, batches):
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate, num_workers=self.tc.num_workers,
            generator=self.loader_generator, pin_memory=self.device.type == "cuda",
        )

    # ---- the loop
    def loop(self) -> TrainingResult:
        from tqdm import tqdm

        tc, state = self.tc, self.state
        self._open_logs(self.resumed)
        self.started = time.perf_counter()
        # a resumed run that had already run out of patience (under this config's patience) stays stopped
        stopped_early, interrupted = state.out_of_patience(tc.patience), False
        since, totals = _Since(), _Since()
        self.bar = tqdm(total=tc.max_steps, initial=state.step, desc=self.config.name, unit="step",
                        dynamic_ncols=True, disable=not (self.progress and self.dist.is_main))
        self.recent: list[float] = []
        self.first_step = state.step + 1
        try:
            with _stop_on_signals(self.stop):
                while state.step < tc.max_steps and not (stopped_early or interrupted):
                    self.train_set.set_epoch(state.epoch)
                    batches = epoch_batches(len(self.train_set), tc.batch_size, self.dist.world_size,
                                            self.dist.rank, tc.seed, state.epoch, state.epoch_step, self.weights)
                    t_last = time.perf_counter()
                    for batch in self.loader(self.train_set, batches):
                        values, tokens = self.train_step(batch)
                        now = time.perf_counter()
                        since.add(tokens, now - t_last, values[0])  # data loading included, validation not
                        self.log_step(values)
                        stop_now, at_end = values[-1] > 0, state.step >= tc.max_steps
                        if state.step % tc.valid_every == 0 or at_end or stop_now:
                            self.validate_and_save(since, totals)
                            since = _Since()
                            stopped_early = state.out_of_patience(tc.patience)
                            interrupted = stop_now
                            if stopped_early or interrupted or at_end:
                                break
                        t_last = time.perf_counter()
                    else:
                        state.epoch, state.epoch_step = state.epoch + 1, 0
        finally:
            self.bar.close()
            self._close_logs()
        if self.dist.is_main:
            if stopped_early:
                print(f"mmt train: stopped early at step {state.step}: no improvement in {tc.patience} validations")
            if interrupted:
                print(f"mmt train: interrupted at step {state.step}; continue with --resume")
        return TrainingResult(
            out_dir=self.out_dir, step=state.step, best_step=state.best_step, best_valid_loss=state.best_loss,
            stopped_early=stopped_early, interrupted=interrupted,
            tokens_per_s=totals.tokens / totals.seconds if totals.seconds > 0 else float("nan"),
            history=self.history,
        )

    def train_step(self, batch: dict) -> tuple[list[float], float]:
        """One optimiser step; returns ([loss, each field's loss, stop request], tokens) summed over processes."""
        model, tc = self.model, self.tc
        self.ddp_model.train()
        codes = batch["codes"].to(self.device, non_blocking=True)
        mask = batch["mask"].to(self.device, non_blocking=True)
        inputs = step_takeover(batch["codes"], batch["mask"], self.config.data.item_augmentation, self.tc.seed,
                               self.state.step, self.dist.rank)
        if inputs is not None:
            inputs = inputs.to(self.device, non_blocking=True)
        with self.autocast():
            loss, losses = compute_loss(self.ddp_model, codes, mask, inputs)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip is not None:
            self.grad_norm = nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        else:
            self.grad_norm = torch.linalg.vector_norm(
                torch.stack([p.grad.detach().norm() for p in model.parameters() if p.grad is not None]))
        self.lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.state.step += 1
        self.state.epoch_step += 1
        # One small all-reduce per step: the logged losses and a stop request from any
        # process (so every process stops at the same step).
        report = torch.stack([loss.detach().float(), *(losses[f].detach().float() for f in FIELDS),
                              torch.tensor(float(self.stop["stop"]), device=self.device)]).double()
        report[:-1] /= self.dist.world_size
        self.dist.sum_(report)
        return report.tolist(), mask[:, :-1].sum().item()

    def log_step(self, values: list[float]) -> None:
        step, lr = self.state.step, self.lr
        if self.dist.is_main:
            self.train_log.write({"step": step, "epoch": self.state.epoch, "loss": values[0],
                                  **{f"loss_{f}": values[1 + i] for i, f in enumerate(FIELDS)},
                                  "lr": lr, "grad_norm": float(self.grad_norm)})
            if self.writer is not None:
                self.writer.add_scalar("train/loss", values[0], step)
                self.writer.add_scalar("train/lr", lr, step)
        self.recent.append(values[0])
        self.bar.update(1)
        if step % self.tc.log_every == 0 or step in (self.first_step, self.tc.max_steps):
            # tqdm shows steps/s (s/step when slower than one step a second)
            self.bar.set_postfix(loss=f"{sum(self.recent) / len(self.recent):.3f}", lr=f"{lr:.2e}")
            self.recent.clear()

    def validate_and_save(self, since: _Since, totals: _Since) -> None:
        """Validate, log the row, save `best/` (when improved) and `last/`."""
        state, world = self.state, self.dist.world_size
        tokens = self.dist.sum_(torch.tensor(since.tokens, dtype=torch.float64, device=self.device)).item()
        wall = torch.tensor([since.seconds], dtype=torch.float64, device=self.device)
        if world > 1:
            dist.all_reduce(wall, op=dist.ReduceOp.MAX)
        wall = wall.item()
        metrics = evaluate(self.model, self.loader(self.valid_set, _chunks(self.valid_items, self.tc.batch_size)),
                           self.device, self.autocast, self.dist)
        improved = state.improves(metrics["total"])
        row = {
            "step": state.step, "epoch": state.epoch, "lr": self.lr,
            "train_loss": since.loss_sum / max(since.steps, 1),
            **{f"valid_{f}": metrics[f] for f in FIELDS}, "valid_loss": metrics["total"],
            "tokens_per_s": tokens / wall if wall > 0 else float("nan"),
            "steps_per_s": since.steps / wall if wall > 0 else float("nan"),
            "elapsed_s": time.perf_counter() - self.started, "best": int(improved),
        }
        self.history.append(row)
        totals.tokens += tokens
        totals.seconds += wall
        if self.dist.is_main:
            self.log.write(row)
            if self.writer is not None:
                for f in FIELDS:
                    self.writer.add_scalar(f"valid/{f}", metrics[f], state.step)
                self.writer.add_scalar("valid/loss", metrics["total"], state.step)
                self.writer.add_scalar("train/tokens_per_s", row["tokens_per_s"], state.step)
            self.bar.write(f"step {state.step}: valid loss {metrics['total']:.4f}"
                           f"{' (best)' if improved else ''}, {row['tokens_per_s']:.0f} tokens/s")
        checkpoint_metrics = {"valid_loss": metrics["total"], **{f"valid_{f}": metrics[f] for f in FIELDS},
                              "best_valid_loss": state.best_loss, "best_step": state.best_step}
        # (an epoch_step at the epoch's end resumes into an empty remainder, then the next
        # epoch, as the uninterrupted loop does)
        if improved:
            self.save(self.best_dir, checkpoint_metrics, with_state=False)
        self.save(self.last_dir, checkpoint_metrics, with_state=True)
        self.dist.barrier()

    def save(self, directory: Path, metrics: dict, with_state: bool) -> None:
        """A checkpoint of the model (and, in `last/`, everything needed to resume) on rank 0."""
        world, state = self.dist.world_size, self.state
        rng_states = [_rng_state(self.device)]
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
        if not self.dist.is_main:
            return
        extra = {}
        if with_state:
            snapshot = {
                "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "step": state.step, "epoch": state.epoch, "epoch_step": state.epoch_step,
                "items_into_epoch": state.epoch_step * self.tc.batch_size * world,
                "best_valid_loss": state.best_loss, "best_step": state.best_step,
                "bad_validations": state.bad_validations, "rng_states": rng_states, "world_size": world,
                "config": self.config.to_dict(),
            }
            extra[STATE_FILE] = lambda p: torch.save(snapshot, p)
        save_model(self.model, directory, extra_files=extra, step=state.step, epoch=state.epoch, metrics=metrics,
                   experiment=self.config.to_dict(), data=str(self.data_path))


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
