"""The results store: one folder per cell, written whole or not at all (``format`` says what the files are)."""

from study.store.store import Store, pid_alive, provenance, study_fingerprint

__all__ = ["Store", "pid_alive", "provenance", "study_fingerprint"]
