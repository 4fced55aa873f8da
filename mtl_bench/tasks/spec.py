"""Task and suite metadata, as stored in YAML under the top-level ``tasks/`` folder (keys mirror these fields)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mtl_bench.models.types import MODALITIES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(_Frozen):
    source: Literal["builtin"] = "builtin"  # builtin = the generated shop; issue 6 adds hub ids and local files
    name: str = "shop"
    subset: str  # builtin subset (classification, captioning, video)
    splits: dict[Literal["train", "validation", "test"], str] = {
        "train": "train",
        "validation": "validation",
        "test": "test",
    }


class TaskSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)  # bump on any change that makes old scores incomparable
    description: str
    type: str  # a registered task type: classification, captioning, tagging
    dataset: DatasetSpec
    inputs: dict[str, str]  # modality -> dataset column
    target: str  # dataset column holding the label / caption / tags
    metrics: list[str] = Field(min_length=1)
    main_score: str
    higher_is_better: bool = True  # direction of the main score

    def modalities(self) -> list[str]:
        return sorted(self.inputs)


class SuiteSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    description: str
    tasks: list[str] = Field(min_length=1)


ALLOWED_MODALITIES = frozenset(MODALITIES)
