"""The results store: one folder per cell, written whole or not at all (``format`` says what the files are)."""

from study.store.format import Summary, pid_alive
from study.store.store import Store, manifest, provenance, record, study_fingerprint

__all__ = ["Store", "Summary", "manifest", "pid_alive", "provenance", "record", "study_fingerprint"]
