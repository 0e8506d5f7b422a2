"""What the lab's JSON files may hold: ``agent.json``, the resume state, sweep job records, attack result cards.

Pydantic models (strict types, bounded sizes, known names, finite statistics) checked whenever a file is read
back, so a hand-edited or corrupt file is refused in one line naming the file and the field before any of it
sizes memory or builds a network. Unknown extra keys are kept: a newer rllab may add fields.
"""

from rllab.schema.agent import AgentSpec, validate_spec
from rllab.schema.base import (
    ACTIVATIONS,
    ALGOS,
    BOX_DTYPES,
    EXTRACTORS,
    FILTERS,
    MAX_ACTIONS,
    MAX_JSON_DEPTH,
    MAX_KERNEL,
    MAX_LAYERS,
    MAX_LIST,
    MAX_OBS_ELEMENTS,
    MAX_SMOOTHING_SAMPLES,
    MAX_WIDTH,
    POLICY_CLASSES,
    SCHEMA,
    SPACE_TYPES,
    one_line,
    validate,
)
from rllab.schema.records import ResultCard, ResumeState, RunConfig, SweepRecord

__all__ = [
    "ACTIVATIONS",
    "ALGOS",
    "BOX_DTYPES",
    "EXTRACTORS",
    "FILTERS",
    "MAX_ACTIONS",
    "MAX_JSON_DEPTH",
    "MAX_KERNEL",
    "MAX_LAYERS",
    "MAX_LIST",
    "MAX_OBS_ELEMENTS",
    "MAX_SMOOTHING_SAMPLES",
    "MAX_WIDTH",
    "POLICY_CLASSES",
    "SCHEMA",
    "SPACE_TYPES",
    "AgentSpec",
    "ResultCard",
    "ResumeState",
    "RunConfig",
    "SweepRecord",
    "one_line",
    "validate",
    "validate_spec",
]
