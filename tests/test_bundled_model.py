"""The bundled model (`music21-small`) loads by name, has learned the corpus, and generates in each mode."""

from pathlib import Path

import numpy as np
import pytest
import torch

import mmt
from mmt.constants import Field, RowType
from mmt.checkpoint import resolve_checkpoint
from mmt.encoding import decode, encode_notes, grammar_violations
from mmt.request import prompt_from_music

BUNDLED_MODEL = "music21-small"


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return mmt.load_model(BUNDLED_MODEL).eval()


def header_instruments(codes, encoding):
    rows = codes[codes[:, Field.TYPE] == RowType.INSTRUMENT]
    return [encoding.instruments[c - 1] for c in rows[:, Field.INSTRUMENT]]


def test_bundled_model_is_the_music21_mix_config(model):
    from mmt.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "music21-mix.yaml")
    assert model.config == config.model
    assert model.sampling == config.sampling  # top-p 0.9 on every field but the instrument
    assert model.sampling.per_field("top_p") == (0.9, 0.9, 0.9, 0.9, 0.9, None)
    assert model.sampling.per_field("temperature") == (1.0, 1.0, 1.0, 1.0, 1.0, 1.5)
    folder = resolve_checkpoint(BUNDLED_MODEL)
    assert folder.parent.name == "models" and folder.parent.parent.name == "mmt"
    assert (folder / "README.md").is_file() and (folder / "log.csv").is_file()


def test_unconditioned_sample_is_well_formed(model):
    codes = mmt.generate(model, n_samples=1, bars=2, top_p=0.9, seed=0)[0]
    assert codes[0, Field.TYPE] == RowType.START_OF_SONG
    assert grammar_violations(codes, model.encoding, complete=False) == []
    assert len(decode(codes, model.encoding).tracks) >= 1


def test_instrument_sample_uses_the_string_quartet(model):
    codes = mmt.generate(model, instruments=["violin", "viola", "cello"], bars=2, top_p=0.9, seed=0)[0]
    assert header_instruments(codes, model.encoding) == ["violin", "viola", "cello"]
    assert grammar_violations(codes, model.encoding, complete=False) == []


def test_continuation_keeps_the_prompt(model):
    notes = np.array([[beat, 0, pitch, 12, 0] for beat, pitch in enumerate([60, 62, 64, 65, 67, 69, 71, 72])])
    music = decode(encode_notes(notes, model.encoding), model.encoding)
    prompt = prompt_from_music(music, model.encoding, n_beats=4)
    codes = mmt.generate(model, prompt=prompt, bars=2, top_p=0.9, seed=0)[0]
    np.testing.assert_array_equal(codes[: len(prompt)], prompt)
    assert len(codes) > len(prompt)
    assert grammar_violations(codes, model.encoding, complete=False) == []


def test_the_bundled_weights_have_learned_the_corpus(model):
    """Its loss on three corpus pieces is far below that of the same network untrained.

    (Measured: 2.98 nats per row against 28.98 for seeded random weights of the same network;
    3.07 for the model bundled before it (stage 7 of its training), 3.06 for stage 6, 3.09 for
    stage 5, 5.12 for the 1.1 M-parameter model bundled first; every other test here checks what
    the sampler's masks guarantee with any weights, this one does not.)
    """
    from music21 import corpus

    from mmt.data import collate, crop_codes
    from mmt.model import compute_loss
    from tests.factories import tiny_model

    works = ("bach/bwv66.6", "bach/bwv1.6", "schumann_robert/opus41no1/movement2")
    pieces = [crop_codes(mmt.encode(mmt.read_music(corpus.getWork(w)), model.encoding), model.config.max_seq_len)
              for w in works]
    batch = collate(pieces)
    untrained = tiny_model(model.config.pos_emb, dim=model.config.dim, depth=model.config.depth,
                           heads=model.config.heads, max_seq_len=model.config.max_seq_len, encoding=model.encoding,
                           row_conditioning=model.config.row_conditioning, tie_pitch=model.config.tie_pitch)
    with torch.no_grad():
        learned = compute_loss(model, batch["codes"], batch["mask"])[0].item()
        random = compute_loss(untrained, batch["codes"], batch["mask"])[0].item()
    assert random > 20.0
    assert learned < 4.5


def test_the_bundled_model_knows_control_rows_and_runs_both_new_modes_with_them(model, recwarn):
    import muspy

    from mmt.errors import GenerationWarning

    assert model.encoding.anticipation == 4.0 and model.encoding.n_tokens["type"] == 7
    melody = [muspy.Note(time=12 * b, pitch=67 + b % 5, duration=12, velocity=64) for b in range(16)]
    bass = [muspy.Note(time=24 * b, pitch=43 + b % 3, duration=24, velocity=64) for b in range(8)]
    music = muspy.Music(resolution=12, tempos=[muspy.Tempo(0, 100.0)],
                        tracks=[muspy.Track(program=73, notes=melody), muspy.Track(program=0, notes=bass)])
    for fields in ({"mode": "accompaniment", "keep": ("flute",), "instruments": ("piano",)},
                   {"mode": "infill", "bars_to_fill": (2, 3)}):
        generation = mmt.request.run(model, mmt.GenerationRequest(prompt=music, seed=0, **fields))
        assert generation.settings()["anticipation_beats"] == 4.0
        codes = generation.samples[0]
        assert grammar_violations(codes, model.encoding) == []
        given = codes[codes[:, Field.TYPE] == RowType.CONTROL]
        assert len(given) == len(generation.prompt.controls) > 0
    assert not [w for w in recwarn if issubclass(w.category, GenerationWarning)]


def test_the_bundled_input_pitch_embedding_has_learned_octaves(model):
    """The paper's finding: pitches an octave apart are read alike (measured 0.326 for the
    bundled table, 0.311 for the one bundled before it; -0.009 for seeded random weights of the
    same shape, within 0.01 of 0 for seeds 0-4)."""
    from mmt.analysis.embedding import octave_score, pitch_tables
    from tests.factories import tiny_model

    untrained = tiny_model(model.config.pos_emb, dim=model.config.dim, depth=1, heads=model.config.heads,
                           encoding=model.encoding, tie_pitch=model.config.tie_pitch)
    learned = pitch_tables(model)["input embedding"]
    random = pitch_tables(untrained)["input embedding"]
    assert octave_score(learned) >= 0.1
    assert abs(octave_score(random)) < 0.05
