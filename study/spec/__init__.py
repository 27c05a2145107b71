"""Study definitions: the TOML schema, grid expansion and cell ids. Pure: imports only ``variants``."""

from study.spec.cells import Cell, NetworkCell, TabularCell, build_variant, canonical_json
from study.spec.grid import Study, builtin_studies, load_study, parse_study, to_toml
from study.spec.schema import KEY_SECTION, PRECISIONS, LoopParams, StudyError, StudyFile

__all__ = ["KEY_SECTION", "PRECISIONS", "Cell", "LoopParams", "NetworkCell", "Study", "StudyError", "StudyFile",
           "TabularCell", "build_variant", "builtin_studies", "canonical_json", "load_study", "parse_study",
           "to_toml"]
