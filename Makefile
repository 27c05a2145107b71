# Two entry points for a new user: `make demo` and `make test`.
# Each creates .venv when missing and installs the tested versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-fast lint claims bench teachers clean

$(STAMP): pyproject.toml constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[atari,ray,dev]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/distill demo

# everything CI checks: lint, types of the pure parts, and every test (fast and slow)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -m ""

# the fast tests only (what a bare `pytest` runs)
test-fast: $(STAMP)
	$(BIN)/python -m pytest

claims: $(STAMP)
	$(BIN)/distill claims

bench: $(STAMP)
	$(BIN)/distill bench tabular

# The committed MinAtar teachers: DQN, 1M agent steps each, on the CPU (resumes an interrupted game).
MINATAR_GAMES := breakout space_invaders asterix freeway seaquest
teachers: $(STAMP)
	for g in $(MINATAR_GAMES); do \
		out=results/teachers/minatar-$$g.pt; \
		if [ -f $$out ]; then continue; fi; \
		resume=; if [ -f $$out.ckpt ]; then resume=--resume; fi; \
		$(BIN)/distill teacher train minatar/$$g --algo dqn --steps 1000000 --out $$out --eval-episodes 30 $$resume || exit 1; \
	done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
