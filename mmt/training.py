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
in epoch e is a permutation drawn from `numpy.random.default_rng([seed, e])`, and the
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
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from mmt.checkpoint import read_checkpoint_info, recover_directory, save_model
from mmt.config import ExperimentConfig, TrainingConfig, config_from_dict
from mmt.constants import FIELDS
from mmt.data import MusicDataset, collate
from mmt.encoding import Encoding
from mmt.errors import MMTError
from mmt.files import atomic_path, write_text_atomic
from mmt.model import MusicTransformer, compute_loss

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


def make_optimizer(model: nn.Module, config: TrainingConfig) -> torch.optim.AdamW:
    """AdamW; weight decay on the weight matrices only (not biases, norms, embeddings)."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if not param.requires_grad:
                continue
            if isinstance(module, nn.Linear) and name == "weight":
                decay.append(param)
            else:
                no_decay.append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)


# ---------------------------------------------------------------------- data order
def epoch_permutation(n_items: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the training items in `epoch`: a pure function of (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n_items)


def epoch_batches(n_items: int, batch_size: int, world_size: int, rank: int, seed: int, epoch: int,
                  start_step: int = 0) -> list[list[int]]:
    """This process's batches of item indices for `epoch`, from step `start_step` of the epoch on.

    Step s uses items perm[s*W*B : (s+1)*W*B] (W processes, B per process), process r
    taking the r-th block of B; the permutation is extended cyclically to fill the last step.
    """
    per_step = batch_size * world_size
    steps = steps_per_epoch(n_items, batch_size, world_size)
    order = np.resize(epoch_permutation(n_items, seed, epoch), steps * per_step)
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
    """Rows of a `log.csv` or `train_log.csv` with numbers parsed."""
    def parse(value: str):
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


def _state_dict(optimizer, scheduler, step, epoch, epoch_step, best, bad_validations, rng_states,
                world_size, config: ExperimentConfig) -> dict:
    return {
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "epoch": epoch,
        "epoch_step": epoch_step,
        "items_into_epoch": epoch_step * config.training.batch_size * world_size,
        "best_valid_loss": best[0],
        "best_step": best[1],
        "bad_validations": bad_validations,
        "rng_states": rng_states,
        "world_size": world_size,
        "config": config.to_dict(),
    }


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
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise TrainingError(f"{path}: no training state to resume from") from None
    except Exception as error:  # torch raises many types for a damaged pickle/zip
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
) -> TrainingResult:
    """Train a `MusicTransformer` as `config` says; see the module docstring for the files written.

    Args:
        config: the experiment (model, training and data sections are used).
        out_dir: the run's directory.
        data_dir: a prepared directory; overrides `config.data.path`.
        resume: continue the run in `out_dir` from `last/` (the config's `max_steps` may
            be raised to train further; the model section must match).
        device: "cpu", "cuda" or "auto"; overrides `config.training.device`.
        progress: show a progress bar (on rank 0).

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
        threads = torch.get_num_threads()
        if tc.threads is not None:
            torch.set_num_threads(tc.threads)
        try:
            with torch.random.fork_rng(devices=rng_devices):
                return _train(config, out_dir, data_path, resume, torch_device, progress, dist_info)
        finally:
            torch.set_num_threads(threads)
    finally:
        if dist_info.initialised_here:
            dist.destroy_process_group()


def _train(config: ExperimentConfig, out_dir: Path, data_path: Path, resume: bool, device: torch.device,
           progress: bool, dist_info: _Dist) -> TrainingResult:
    from tqdm import tqdm

    tc = config.training
    rank, world = dist_info.rank, dist_info.world_size
    last_dir, best_dir = out_dir / "last", out_dir / "best"

    # ---- the out dir: fresh or resumed
    state = None
    if resume:
        if dist_info.is_main and recover_directory(last_dir):
            print(f"mmt train: {last_dir}: restored the previous checkpoint (a crash cut its replacement short)")
        dist_info.barrier()
        if not (last_dir / STATE_FILE).exists():
            raise TrainingError(f"{last_dir}: nothing to resume (no {STATE_FILE}); run without --resume")
        state = _load_state(last_dir / STATE_FILE)
        info = read_checkpoint_info(last_dir)
        saved_model = config_from_dict(state["config"], source=str(last_dir / STATE_FILE)).model
        if saved_model != config.model:
            raise TrainingError(
                f"{last_dir}: the checkpoint's model section {saved_model} differs from the config's "
                f"{config.model}; resume with the config the run started with"
            )
    elif (last_dir / STATE_FILE).exists() or (out_dir / "log.csv").exists():
        raise TrainingError(
            f"{out_dir}: already holds a training run; pass --resume to continue it or choose another --out"
        )

    # ---- data
    train_set = MusicDataset(data_path, config.data.train_split, None, config.data_max_seq_len,
                             max_beat=config.data.max_beat, augment=config.data.augment, seed=tc.seed)
    encoding: Encoding = train_set.encoding
    valid_set = MusicDataset(data_path, config.data.valid_split, encoding, config.data_max_seq_len,
                             max_beat=config.data.max_beat, augment=False, seed=tc.seed)
    if len(train_set) == 0:
        raise TrainingError(f"{data_path / (config.data.train_split + '.txt')}: the training split is empty")
    if len(valid_set) == 0:
        raise TrainingError(f"{data_path / (config.data.valid_split + '.txt')}: the validation split is empty")
    if state is not None and Encoding.from_dict(info["encoding"]) != encoding:
        raise TrainingError(f"{last_dir}: the checkpoint's encoding differs from {data_path / 'encoding.json'}")
    valid_items = list(range(len(valid_set)))
    if tc.valid_batches is not None:
        valid_items = valid_items[: tc.valid_batches * tc.batch_size]
    valid_items = valid_items[rank::world]
    loader_generator = torch.Generator().manual_seed(tc.seed)  # keeps DataLoader off the global RNG

    def loader(dataset, batches):
        return torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, collate_fn=collate, num_workers=tc.num_workers,
            generator=loader_generator, pin_memory=device.type == "cuda",
        )

    # ---- model, optimiser, schedule
    torch.manual_seed(tc.seed)
    model = MusicTransformer(config.model, encoding).to(device)
    if state is not None:
        from mmt.checkpoint import load_model

        model.load_state_dict(load_model(last_dir).state_dict())
    torch.manual_seed(tc.seed + 1 + rank)  # dropout stream, distinct per process
    optimizer = make_optimizer(model, tc)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))
    step, epoch, epoch_step = 0, 0, 0
    best_loss, best_step, bad_validations = None, None, 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, epoch = state["step"], state["epoch"]
        best_loss, best_step, bad_validations = state["best_valid_loss"], state["best_step"], state["bad_validations"]
        if state["world_size"] == world:
            epoch_step = state["epoch_step"]
            _set_rng_state(state["rng_states"][rank], device)
        else:  # same items, but dropout cannot replay exactly with another process count
            epoch_step = state["items_into_epoch"] // (tc.batch_size * world)
            torch.manual_seed(tc.seed + 1 + rank + 1000 * step)
    ddp_model = model
    if world > 1:
        ddp_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)

    use_bf16 = tc.bf16 and device.type == "cuda"

    def autocast():
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()

    # ---- logs
    log = train_log = writer = None
    if dist_info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        import yaml

        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        keep = step if state is not None else None
        log = _CsvLog(out_dir / "log.csv", LOG_COLUMNS, keep)
        train_log = _CsvLog(out_dir / "train_log.csv", TRAIN_LOG_COLUMNS, keep)
        if tc.tensorboard:
            writer = _tensorboard_writer(out_dir / "tensorboard")
            if writer is None and state is None:
                print("mmt train: tensorboard is not installed; writing log.csv only")

    def save(directory: Path, metrics: dict, with_state: bool) -> None:
        rng_states = [_rng_state(device)]
        if world > 1:
            gathered = [None] * world
            dist.all_gather_object(gathered, rng_states[0])
            rng_states = gathered
        if not dist_info.is_main:
            return
        extra = {}
        if with_state:
            snapshot = _state_dict(optimizer, scheduler, step, epoch, epoch_step, (best_loss, best_step),
                                   bad_validations, rng_states, world, config)
            extra[STATE_FILE] = lambda p: torch.save(snapshot, p)
        save_model(model, directory, extra_files=extra, step=step, epoch=epoch, metrics=metrics,
                   experiment=config.to_dict(), data=str(data_path))

    # ---- loop
    history: list[dict] = []
    stop = {"stop": False}
    interrupted = False
    # a resumed run that had already run out of patience (under this config's patience) stays stopped
    stopped_early = tc.patience is not None and bad_validations >= tc.patience
    tokens_since = torch.zeros((), dtype=torch.float64)
    train_loss_sum, train_loss_count = 0.0, 0
    steps_since, train_time = 0, 0.0
    started = time.perf_counter()
    total_tokens, total_train_time = 0.0, 0.0
    bar = tqdm(total=tc.max_steps, initial=step, desc=config.name, unit="step", dynamic_ncols=True,
               disable=not (progress and dist_info.is_main))
    recent: list[float] = []
    first_step = step + 1
    t_last = time.perf_counter()
    try:
        with _stop_on_signals(stop):
            while step < tc.max_steps and not stopped_early:
                train_set.set_epoch(epoch)
                batches = epoch_batches(len(train_set), tc.batch_size, world, rank, tc.seed, epoch, epoch_step)
                for batch in loader(train_set, batches):
                    ddp_model.train()
                    codes = batch["codes"].to(device, non_blocking=True)
                    mask = batch["mask"].to(device, non_blocking=True)
                    with autocast():
                        loss, losses = compute_loss(ddp_model, codes, mask)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    if tc.grad_clip is not None:
                        grad_norm = nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
                    else:
                        grad_norm = torch.linalg.vector_norm(
                            torch.stack([p.grad.detach().norm() for p in model.parameters() if p.grad is not None]))
                    lr = optimizer.param_groups[0]["lr"]
                    optimizer.step()
                    scheduler.step()
                    step += 1
                    epoch_step += 1
                    # One small all-reduce per step: the logged losses and a stop request
                    # from any process (so every process stops at the same step).
                    report = torch.stack([loss.detach().float(), *(losses[f].detach().float() for f in FIELDS),
                                          torch.tensor(float(stop["stop"]), device=device)]).double()
                    report[:-1] /= world
                    dist_info.sum_(report)
                    tokens = mask[:, :-1].sum().double().cpu()
                    tokens_since += tokens
                    now = time.perf_counter()
                    train_time += now - t_last  # data loading included, validation not
                    t_last = now
                    steps_since += 1
                    values = report.tolist()
                    train_loss_sum += values[0]
                    train_loss_count += 1
                    if dist_info.is_main:
                        train_log.write({"step": step, "epoch": epoch, "loss": values[0],
                                         **{f"loss_{f}": values[1 + i] for i, f in enumerate(FIELDS)},
                                         "lr": lr, "grad_norm": float(grad_norm)})
                        if writer is not None:
                            writer.add_scalar("train/loss", values[0], step)
                            writer.add_scalar("train/lr", lr, step)
                    recent.append(values[0])
                    bar.update(1)
                    if step % tc.log_every == 0 or step in (first_step, tc.max_steps):
                        # tqdm shows steps/s (s/step when slower than one step a second)
                        bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", lr=f"{lr:.2e}")
                        recent.clear()
                    stop_now = values[-1] > 0
                    at_end = step >= tc.max_steps
                    if step % tc.valid_every == 0 or at_end or stop_now:
                        # ---- validate, log, checkpoint
                        tokens_all = dist_info.sum_(tokens_since.clone().to(device)).item()
                        time_all = torch.tensor([train_time], dtype=torch.float64, device=device)
                        time_max = time_all
                        if world > 1:
                            dist.all_reduce(time_max, op=dist.ReduceOp.MAX)
                        wall = time_max.item()
                        metrics = evaluate(model, loader(valid_set, _chunks(valid_items, tc.batch_size)),
                                           device, autocast, dist_info)
                        improved = best_loss is None or metrics["total"] < best_loss
                        if improved:
                            best_loss, best_step, bad_validations = metrics["total"], step, 0
                        else:
                            bad_validations += 1
                        row = {
                            "step": step, "epoch": epoch, "lr": lr,
                            "train_loss": train_loss_sum / max(train_loss_count, 1),
                            **{f"valid_{f}": metrics[f] for f in FIELDS}, "valid_loss": metrics["total"],
                            "tokens_per_s": tokens_all / wall if wall > 0 else float("nan"),
                            "steps_per_s": steps_since / wall if wall > 0 else float("nan"),
                            "elapsed_s": time.perf_counter() - started, "best": int(improved),
                        }
                        history.append(row)
                        total_tokens += tokens_all
                        total_train_time += wall
                        tokens_since.zero_()
                        train_loss_sum, train_loss_count, steps_since, train_time = 0.0, 0, 0, 0.0
                        if dist_info.is_main:
                            log.write(row)
                            if writer is not None:
                                for f in FIELDS:
                                    writer.add_scalar(f"valid/{f}", metrics[f], step)
                                writer.add_scalar("valid/loss", metrics["total"], step)
                                writer.add_scalar("train/tokens_per_s", row["tokens_per_s"], step)
                            bar.write(f"step {step}: valid loss {metrics['total']:.4f}"
                                      f"{' (best)' if improved else ''}, {row['tokens_per_s']:.0f} tokens/s")
                        stopped_early = tc.patience is not None and bad_validations >= tc.patience
                        checkpoint_metrics = {"valid_loss": metrics["total"],
                                              **{f"valid_{f}": metrics[f] for f in FIELDS},
                                              "best_valid_loss": best_loss, "best_step": best_step}
                        # (an epoch_step at the epoch's end resumes into an empty remainder,
                        # then the next epoch, as the uninterrupted loop does)
                        if improved:
                            save(best_dir, checkpoint_metrics, with_state=False)
                        save(last_dir, checkpoint_metrics, with_state=True)
                        dist_info.barrier()
                        t_last = time.perf_counter()
                        if stop_now:
                            interrupted = True
                        if stopped_early or interrupted or at_end:
                            break
                    if stopped_early or interrupted:
                        break
                if stopped_early or interrupted or step >= tc.max_steps:
                    break
                epoch, epoch_step = epoch + 1, 0
    finally:
        bar.close()
        if log is not None:
            log.close()
            train_log.close()
        if writer is not None:
            writer.close()
    if dist_info.is_main:
        if stopped_early:
            print(f"mmt train: stopped early at step {step}: no improvement in {tc.patience} validations")
        if interrupted:
            print(f"mmt train: interrupted at step {step}; continue with --resume")
    return TrainingResult(
        out_dir=out_dir, step=step, best_step=best_step, best_valid_loss=best_loss,
        stopped_early=stopped_early, interrupted=interrupted,
        tokens_per_s=total_tokens / total_train_time if total_train_time > 0 else float("nan"),
        history=history,
    )


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[i:i + size] for i in range(0, len(items), size)]
