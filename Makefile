# The README's two commands: `make demo` and `make test`. Both build a local virtual
# environment first: torch's CPU wheel pinned (any other spec pulls a multi-GB CUDA
# build), then the package in editable mode with its dev extras.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo audio clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q

demo: $(STAMP) audio
	$(BIN)/mmt demo

# Optional: fluidsynth and a General MIDI soundfont, so that samples are also rendered to
# WAV. Installed with apt-get where this runs as root on Debian/Ubuntu; elsewhere (or when
# it fails) the demo and the tests carry on without audio and say so.
audio:
	@if command -v fluidsynth >/dev/null && ls /usr/share/sounds/sf2/*.sf2 >/dev/null 2>&1; then \
		echo "audio: fluidsynth and a GM soundfont are installed"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
			fluidsynth fluid-soundfont-gm >/dev/null) || echo "audio: apt-get failed; no WAVs"; \
	else \
		echo "audio: install fluidsynth and fluid-soundfont-gm for WAVs (skipped: not root or no apt-get)"; \
	fi

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis
