"""`mmt demo`: the whole pipeline on the embedded default, the corpus bundled with music21.

Steps (each one resumable: a second run reuses what the first one wrote):

1. prepare: `mmt prepare music21 - DATA` for the test split only, at most
   `prepare_limit` files (the bundled model is already trained). With `train=True`,
   also the whole corpus with every tune, `mmt prepare music21-tunes - TRAIN_DATA`
   (about 11 minutes on two cores). Each music21 piece has the same source, id and split
   in both listings, so the test pieces are never trained on.
2. model: the bundled `music21-small` (`mmt.load_model("music21-small")`; or, with
   `train=True`, a model trained from scratch with the bundled model's own experiment
   config on TRAIN_DATA into OUT/train/).
3. samples: `n_samples` songs in each mode: unconditioned; instrument-informed (a string
   quartet: violin, viola, cello, as the encoding has one code per instrument); and the
   continuation of the first 8 bars of the first test piece; that piece's bars 3-4
   rewritten (infill) and a viola and cello part written under its melody (accompaniment),
   the kept notes drawn pale on the piano roll. MIDI, CSV, piano roll and,
   where fluidsynth and a GM soundfont are installed, WAV, in OUT/samples/.
4. evaluate: `mmt evaluate` on `n_eval` test pieces (ground truth and every mode) into
   OUT/evaluation/.
5. analyze: `mmt analyze` (attention, embeddings, training curve, the evaluation table and
   the samples) into OUT/report/index.html.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from mmt.errors import MMTError
from mmt.prepared import PreparedData

BUNDLED_MODEL = "music21-small"
STRING_QUARTET = ("violin", "viola", "cello")
ACCOMPANIMENT = ("viola", "cello", "violin")  # the parts written under a test piece's melody (two of them)
MODES = ("unconditioned", "instrument", "continuation", "infill", "accompaniment")


class DemoError(MMTError, ValueError):
    """The demo cannot run (no bundled model, nothing prepared)."""


@dataclass(frozen=True)
class DemoConfig:
    """Settings of `run_demo`.

    Attributes:
        out: the output folder (samples/, evaluation/, report/).
        data: the prepared corpus folder (its test split is prepared there when missing).
        train_data: with `train`, the folder for the whole corpus with every tune.
        model: a checkpoint directory; None: the bundled model (or the trained one).
        train: train the bundled model's experiment config from scratch first (prepares `train_data`).
        prepare_limit: files of the test split prepared when not training.
        n_samples: samples per mode.
        n_eval: test pieces evaluated (ground truth and each mode).
        n_analysis: test pieces fed to the attention analysis.
        prompt_bars: bars of the test piece kept as the continuation's prompt.
        bars: length of every sample in bars of 4 beats (the prompt included).
        top_p: nucleus sampling threshold for samples and evaluation (None: the model's default).
        seed: the random seed of everything sampled.
        jobs: worker processes for preparation.
        audio: render WAVs when fluidsynth is available.
        device: torch device.
    """

    out: Path = Path("out/demo")
    data: Path = Path("data/music21")
    train_data: Path = Path("data/music21-tunes")
    model: Path | None = None
    train: bool = False
    prepare_limit: int = 120
    n_samples: int = 2
    n_eval: int = 8
    n_analysis: int = 16
    prompt_bars: int = 8
    bars: int = 32
    top_p: float | None = None
    seed: int = 0
    jobs: int = 2
    audio: bool = True
    device: str = "cpu"

    def __post_init__(self) -> None:
        for name in ("prepare_limit", "n_samples", "n_eval", "n_analysis", "prompt_bars", "bars", "jobs"):
            if getattr(self, name) < 1:
                raise DemoError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.bars <= self.prompt_bars:
            raise DemoError(f"bars ({self.bars}) must be more than prompt_bars ({self.prompt_bars})")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise DemoError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def sampling(self) -> dict:
        """The sampling settings that replace the model's defaults."""
        return {} if self.top_p is None else {"top_p": self.top_p}


def _step(log: Callable[[str], None], text: str) -> float:
    log(f"\n== {text}")
    return time.perf_counter()


def prepare_corpus(config: DemoConfig, log: Callable[[str], None] = print) -> Path:
    """Prepare the test split's first files into `config.data` (and, to train, all of `train_data`)."""
    from mmt.data_prep import prepare_dataset

    runs = [("music21", config.data, ("test",), config.prepare_limit)]
    if config.train:
        runs.append(("music21-tunes", config.train_data, None, None))
    for dataset, data, splits, limit in runs:
        summary = prepare_dataset(dataset, "-", data, jobs=config.jobs, splits=splits, limit=limit, log=log)
        counts = summary.counts
        log(f"{data}: {counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed "
            f"({summary.processed} prepared now in {summary.seconds:.0f} s)")
    if not (config.data / "test.txt").is_file() or not PreparedData(config.data).split("test"):
        raise DemoError(f"{config.data}: no test pieces were prepared; see {config.data / 'manifest.jsonl'}")
    return config.data


def train_model(config: DemoConfig, log: Callable[[str], None] = print) -> Path:
    """Train the bundled model's experiment from scratch into OUT/train; returns its best checkpoint."""
    from mmt.checkpoint import resolve_checkpoint
    from mmt.config import load_config
    from mmt.training import train

    run = config.out / "train"
    resume = (run / "last").is_dir()
    experiment = load_config(resolve_checkpoint(BUNDLED_MODEL) / "config.yaml")
    result = train(experiment, run, data_dir=config.train_data, resume=resume, device=config.device)
    log(f"trained {result.step} steps, best valid loss {result.best_valid_loss:.4f} at step {result.best_step}")
    return run / "best"


def model_path(config: DemoConfig) -> Path:
    """The checkpoint the demo uses (bundled unless given)."""
    from mmt.checkpoint import CheckpointError, resolve_checkpoint

    try:
        return resolve_checkpoint(config.model or BUNDLED_MODEL)
    except CheckpointError as error:
        raise DemoError(f"{error}; pass --model DIR, or --train to train one") from None


def long_piece(data: PreparedData, ids: list[str], bars: float) -> str:
    """The first piece that lasts at least `bars` bars of its own meter (so a continuation has
    music of its own after the prompt to set against), else the longest."""
    from mmt.meter import Meter
    from mmt.request import bars_to_beats

    spare = {}
    for piece in ids:
        music = data.music(piece)
        spare[piece] = music.get_end_time() / music.resolution - bars_to_beats(Meter.from_music(music), bars)
        if spare[piece] >= 0:
            return piece
    return max(spare, key=spare.get)


def write_samples(model, config: DemoConfig, log: Callable[[str], None] = print, model_name: str | None = None) -> Path:
    """Generate `n_samples` songs per mode into OUT/samples; returns that folder."""
    from mmt.analysis.evaluation import melody_instrument
    from mmt.constants import Field, RowType
    from mmt.encoding import encode
    from mmt.io import audio_available
    from mmt.request import GenerationRequest, run

    out = config.out / "samples"
    shutil.rmtree(out, ignore_errors=True)  # this run's samples only (a rerun draws them again)
    audio = config.audio and audio_available()
    if config.audio and not audio:
        log("audio: fluidsynth or a GM soundfont is missing, so no WAVs "
            "(Debian/Ubuntu: apt-get install fluidsynth fluid-soundfont-gm, or `make audio`)")
    data = PreparedData(config.data)
    piece = long_piece(data, data.split("test"), config.bars)
    common = {"n_samples": config.n_samples, "sampling": config.sampling, "seed": config.seed}
    music = trim_music(data.music(piece), config.bars)
    requests = [
        GenerationRequest(bars=config.bars, **common),
        GenerationRequest(mode="instrument", instruments=STRING_QUARTET, bars=config.bars, **common),
        GenerationRequest(mode="continuation", prompt=data.music(piece), prompt_bars=config.prompt_bars,
                          bars=config.bars - config.prompt_bars, **common),
        # the same piece: the bars after the prompt rewritten, every other note kept
        GenerationRequest(mode="infill", prompt=music, bars_to_fill=fill_bars(music, config.prompt_bars + 1, 4),
                          **common),
    ]
    # the same piece's highest part kept as a melody, and a new part written under it (a musician's
    # "string accompaniment for my tune")
    rows = encode(music, model.encoding)
    notes = rows[rows[:, Field.TYPE] == RowType.NOTE]
    melody = model.encoding.instruments[melody_instrument(notes, model.encoding) - 1]
    requests.append(GenerationRequest(mode="accompaniment", prompt=music, keep=(melody,),
                                      instruments=tuple(i for i in ACCOMPANIMENT if i != melody)[:2], **common))
    for request in requests:
        generation = run(model, request, device=config.device)
        for codes, paths in zip(generation.samples, generation.write(out, audio=audio, model_name=model_name)):
            log(f"{paths['midi'].stem}: {len(codes)} rows -> {', '.join(p.name for p in paths.values())}")
        if request.prompt is not None:
            name_source(out, f"test piece {piece}")
        if request.mode == "continuation":
            log(f"continuation prompt: the first {config.prompt_bars} bars of test piece {piece} "
                f"({len(generation.prompt.codes)} rows)")
        if generation.prompt.controls is not None:
            anticipation = model.encoding.anticipation
            kept = generation.prompt.n_notes + len(generation.prompt.controls)  # an infill's notes before the gap too
            log(f"{request.mode}: test piece {piece}, {kept} notes kept, "
                + (f"anticipation {anticipation:g} beats" if anticipation is not None else
                   "anticipation 0 (this model was trained without control rows)"))
    return out


def name_source(out: Path, source: str) -> None:
    """Name the piece the last run recorded in `out/settings.json` took its prompt from (a prompt
    given as music, not as a file, is recorded as "<Music>"): the report's captions read it."""
    from mmt.files import read_json, write_text_atomic
    from mmt.request import SETTINGS_FILE

    runs = read_json(out / SETTINGS_FILE, DemoError, "samples settings")
    runs[-1]["source"] = source
    write_text_atomic(out / SETTINGS_FILE, json.dumps(runs, indent=1) + "\n")


def trim_music(music, bars: float):
    """`music` cut after its first `bars` bars (its own meter)."""
    from mmt.analysis.evaluation import trim_music as trim
    from mmt.meter import Meter
    from mmt.request import bars_to_beats

    return trim(music, bars_to_beats(Meter.from_music(music), bars))


def fill_bars(music, first: int, count: int) -> tuple[int, int]:
    """Up to `count` bars to fill from bar `first` on, within the bars `music` has (its last, if shorter)."""
    from mmt.meter import Meter

    meter = Meter.from_music(music)
    starts, _ = meter.bars(music.get_end_time() / music.resolution)
    n_bars = max(len(starts) - (1 if meter.pickup > 0 else 0), 1)
    first = min(first, n_bars)
    return first, min(first + count - 1, n_bars)


def run_demo(config: DemoConfig = DemoConfig(), log: Callable[[str], None] = print) -> dict[str, Path]:
    """Run every step; returns the paths of what it wrote."""
    from mmt.analysis.evaluation import EvaluationConfig, evaluate
    from mmt.analysis.report import ReportConfig, write_report
    from mmt.checkpoint import load_model

    started = time.perf_counter()
    bundled = None if config.train else model_path(config)  # fail before any slow step
    config.out.mkdir(parents=True, exist_ok=True)
    scope = "test split, and all of it to train" if config.train else "test split"
    t = _step(log, f"1/5 prepare the music21 corpus ({scope})")
    prepare_corpus(config, log)
    log(f"({time.perf_counter() - t:.0f} s)")
    t = _step(log, "2/5 model")
    path = train_model(config, log) if config.train else bundled
    model = load_model(path, device=config.device).eval()
    log(f"{path}: {model.n_parameters():,} parameters, {model.config.pos_emb} positions ({time.perf_counter() - t:.0f} s)")
    t = _step(log, f"3/5 generate {config.n_samples} samples per mode ({', '.join(MODES)})")
    samples = write_samples(model, config, log, model_name=str(path))
    log(f"({time.perf_counter() - t:.0f} s)")
    t = _step(log, f"4/5 evaluate on {config.n_eval} test pieces")
    evaluation = config.out / "evaluation"
    evaluate(config.data, evaluation, model, split="test", n=config.n_eval,
             config=EvaluationConfig(seed=config.seed, sampling=config.sampling), device=config.device,
             restart=True)
    log((evaluation / "metrics.md").read_text(encoding="utf-8"))
    log(f"({time.perf_counter() - t:.0f} s)")
    t = _step(log, "5/5 analyze")
    report = write_report(path, config.data, config.out / "report",
                          ReportConfig(n_sequences=config.n_analysis, split="test", seed=config.seed,
                                       device=config.device),
                          eval_dir=evaluation, samples_dir=samples, progress=True)
    log(f"({time.perf_counter() - t:.0f} s)")
    paths = {"samples": samples, "evaluation": evaluation / "metrics.md", "report": report, "model": path,
             "data": config.data}
    log(f"\nDone in {time.perf_counter() - started:.0f} s.")
    for name, value in paths.items():
        log(f"  {name:<10} {value}")
    log(f"Open {report} in a browser.")
    return paths


__all__ = ["BUNDLED_MODEL", "DemoConfig", "DemoError", "run_demo"]
