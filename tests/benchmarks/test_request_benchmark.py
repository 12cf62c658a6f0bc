"""benchmarks/request.py: the JSON it writes names the model's sampling defaults beside the overrides."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mmt.checkpoint import save_model
from mmt.config import SamplingParams
from tests.factories import march, tiny_model

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
_spec = importlib.util.spec_from_file_location("request_benchmark", BENCHMARKS / "request.py")
request_benchmark = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(request_benchmark)


def test_json_records_sampling_defaults_and_overrides(tmp_path, one_thread):
    model = march(tiny_model(max_seq_len=256))
    model.sampling = SamplingParams(temperature={"instrument": 1.5})
    model_dir = save_model(model, tmp_path / "model")
    out = tmp_path / "request.json"
    request_benchmark.main(["--model", str(model_dir), "-n", "2", "--bars", "1", "--min-notes", "1", "--plain",
                            "--seed", "3", "--sampling", '{"top_p": 0.8}', "--json", str(out)])

    written = json.loads(out.read_text())
    assert written["sampling_defaults"] == {"temperature": {"instrument": 1.5}, "top_k": None, "top_p": None,
                                            "repetition_penalty": 1.0}
    assert written["sampling"] == {"top_p": 0.8}
    assert (written["seed"], written["n"], written["bars"], written["min_notes"]) == (3, 2, 1.0, 1)
    assert list(written["results"]) == [f"{name} (plain)" for name in request_benchmark.ENSEMBLES]
