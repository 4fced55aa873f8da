"""Task and suite metadata, as stored in YAML under the top-level ``tasks/`` folder (keys mirror these fields)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mtl_bench.core.types import MODALITIES


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DatasetSpec(_Frozen):
    source: str = "builtin"  # a registered data source (mtl_bench/data/sources/); builtin = the generated shop
    name: str = "shop"
    subset: str  # the source's subset (builtin: classification, captioning, video)
    options: dict[str, Any] = {}  # the source's own settings, checked by the source when it loads
    splits: dict[Literal["train", "validation", "test"], str] = {
        "train": "train",
        "validation": "validation",
        "test": "test",
    }


class TaskSpec(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)  # bump on any change that makes old scores incomparable
    description: str
    type: str  # a registered task type: classification, captioning, tagging, retrieval
    dataset: DatasetSpec
    inputs: dict[str, str]  # modality -> dataset column
    target: str  # dataset column holding the label / caption / tags (retrieval: the query text; targets = sample ids)
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
