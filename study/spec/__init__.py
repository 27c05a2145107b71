"""Study definitions: the TOML schema, grid expansion and cell ids. Pure: imports only ``variants``."""

from study.spec.grid import Cell, Study, build_variant, builtin_studies, canonical_json, load_study, parse_study
from study.spec.schema import KEY_SECTION, PRECISIONS, LoopParams, StudyError, StudyFile

__all__ = ["KEY_SECTION", "PRECISIONS", "Cell", "LoopParams", "Study", "StudyError", "StudyFile", "build_variant",
           "builtin_studies", "canonical_json", "load_study", "parse_study"]
