"""Screenshots are off by default and on in the research-lab example."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from deskcorder.agent import default_components
from deskcorder.capture.screenshots import ScreenshotComponent
from deskcorder.policy.load import load_policy

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def components_for(config: str | None, tmp_path: Path) -> list[Any]:
    explicit = None if config is None else CONFIGS / config
    loaded = load_policy(explicit, machine_dir=tmp_path)
    return default_components(SimpleNamespace(policy=loaded.policy))  # type: ignore[arg-type]


def test_off_by_default_on_in_research_lab(tmp_path: Path) -> None:
    for config in (None, "default.toml", "strict-privacy.toml"):
        assert not any(isinstance(c, ScreenshotComponent) for c in components_for(config, tmp_path))
    lab = components_for("research-lab.toml", tmp_path)
    assert [c.name for c in lab if isinstance(c, ScreenshotComponent)] == ["screenshots"]
    lab_policy = load_policy(CONFIGS / "research-lab.toml", machine_dir=tmp_path).policy
    assert lab_policy.capture.screenshots and lab_policy.screenshots.format == "webp"
