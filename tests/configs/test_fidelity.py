"""docs/fidelity.md's table and the shipped configs say the same thing.

Every `` `key=value` `` (or `` `config:key=value` ``) in the table's "Ours" column is checked against the config:
from the YAML files themselves in the fast tier, and against Hydra's composed config (verl's defaults included) in
the full tier. Change a value in either place without the other and these tests fail. Every "Authors' code" cell
must cite the authors' file and line as `` `abbr:line` `` with an abbreviation the Sources section defines.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "fidelity.md"
CONFIG_DIR = REPO / "trainer_configs"
DEFAULT_CONFIG = "mapo_geo3k_qwen2_5_vl_7b"
#: The settings the authors' code fixes and our paper configs must carry: each must be pinned in the doc.
REQUIRED = {
    "actor_rollout_ref.actor.clip_ratio_low",
    "actor_rollout_ref.actor.clip_ratio_high",
    "actor_rollout_ref.actor.clip_ratio_c",
    "actor_rollout_ref.actor.ppo_epochs",
    "actor_rollout_ref.actor.grad_clip",
    "actor_rollout_ref.actor.loss_agg_mode",
    "actor_rollout_ref.actor.kl_loss_coef",
    "actor_rollout_ref.actor.optim.lr",
    "actor_rollout_ref.rollout.n",
    "actor_rollout_ref.rollout.top_p",
    "actor_rollout_ref.rollout.val_kwargs.top_p",
    "actor_rollout_ref.rollout.val_kwargs.temperature",
    "data.max_response_length",
    "data.train_batch_size",
    "trainer.total_epochs",
    "algorithm.use_kl_in_reward",
    "reward.custom_reward_function.path",
}
_TOKEN = re.compile(r"`(?:(?P<config>[a-z0-9_]+):)?(?P<key>[a-z_][\w]*(?:\.[\w]+)+)=(?P<value>[^`]+)`")
_CELL_SPLIT = re.compile(r"(?<!\\)\|")


def doc_pins() -> list[tuple[str, str, str, str]]:
    """(config, key, value text, setting) for every ``key=value`` in the Ours column of the doc's tables."""
    pins: list[tuple[str, str, str, str]] = []
    ours = None
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            ours = None if not line.strip() else ours
            continue
        cells = [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        if "Ours" in cells:
            ours = cells.index("Ours")
            continue
        if ours is None or ours >= len(cells) or set(cells[0]) <= {"-", ":"}:
            continue
        for m in _TOKEN.finditer(cells[ours]):
            pins.append((m.group("config") or DEFAULT_CONFIG, m.group("key"), m.group("value"), cells[0]))
    return pins


def parse_value(text: str) -> Any:
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-06 as a string
        except ValueError:
            return value
    return value


def same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return math.isclose(expected, actual, rel_tol=1e-12, abs_tol=0.0)
    if isinstance(expected, list) and isinstance(actual, list | tuple):
        return len(expected) == len(actual) and all(same(e, a) for e, a in zip(expected, actual, strict=True))
    return expected == actual


def _merge(into: dict, other: dict) -> dict:
    for key, value in other.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value
    return into


def raw_config(name: str) -> dict:
    """The config as our YAML files write it (defaults list merged in order; verl's own defaults left out)."""
    own = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text()) or {}
    merged: dict = {}
    for entry in own.get("defaults", ["_self_"]):
        if entry == "_self_":
            _merge(merged, {k: v for k, v in own.items() if k not in ("defaults", "hydra")})
        elif isinstance(entry, str) and entry.startswith("presets/"):
            _merge(merged, raw_config(entry))
    return merged


def _lookup(tree: dict, key: str) -> tuple[bool, Any]:
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


PINS = doc_pins()

#: ``- `abbr` = `path` `` entries of the Sources list (several on one line allowed)
_ABBREVIATION = re.compile(r"`([a-z.]+)` = `([\w./-]+)`")
#: ``abbr:LINE`` or ``abbr:FIRST-LAST`` inside a code span
_CITATION = re.compile(r"`([a-z.]+):(\d+)(?:-(\d+))?`")


def sources() -> dict[str, str]:
    """The abbreviations the Sources section defines for the authors' files."""
    text = DOC.read_text()
    section = text[text.index("## Sources") : text.index("\n## ", text.index("## Sources") + 1)]
    return dict(_ABBREVIATION.findall(section))


def authors_cells() -> list[tuple[str, str]]:
    """(setting, cell) for every row of a table with an "Authors' code" column."""
    cells_out: list[tuple[str, str]] = []
    column = None
    for line in DOC.read_text().splitlines():
        if not line.startswith("|"):
            column = None if not line.strip() else column
            continue
        cells = [c.strip() for c in _CELL_SPLIT.split(line.strip())[1:-1]]
        if "Authors' code" in cells:
            column = cells.index("Authors' code")
            continue
        if column is None or column >= len(cells) or set(cells[0]) <= {"-", ":"}:
            continue
        cells_out.append((cells[0], cells[column]))
    return cells_out


def test_every_row_names_its_source_in_the_authors_code():
    """Each "Authors' code" cell cites ``abbr:line`` with an abbreviation the Sources list defines (M8's row, about
    this page itself, excepted)."""
    known = sources()
    assert {"cfg", "rt", "ca", "ev", "evd", "evp", "evs"} <= set(known), known
    rows = authors_cells()
    assert len(rows) >= 60
    for setting, cell in rows:
        if setting == "M8":
            continue
        citations = _CITATION.findall(cell)
        assert citations, f"{setting}: the Authors' code cell cites no file:line: {cell[:80]}"
        for abbr, first, last in citations:
            assert abbr in known, f"{setting}: `{abbr}:{first}` uses an abbreviation the Sources list does not define"
            assert int(first) >= 1 and (not last or int(last) >= int(first)), f"{setting}: bad range {first}-{last}"


def test_the_findings_m1_to_m8_are_listed():
    settings = {setting for setting, _ in authors_cells()}
    assert {f"M{i}" for i in range(1, 9)} <= settings


def test_the_doc_pins_every_required_setting():
    pinned = {key for config, key, _, _ in PINS if config == DEFAULT_CONFIG}
    assert pinned >= REQUIRED, f"docs/fidelity.md no longer pins: {sorted(REQUIRED - pinned)}"
    assert len(PINS) >= 60
    configs = {config for config, *_ in PINS}
    assert all((CONFIG_DIR / f"{c}.yaml").is_file() for c in configs), configs


@pytest.mark.parametrize(("config", "key", "value", "setting"), PINS, ids=[f"{c}:{k}" for c, k, _, _ in PINS])
def test_doc_matches_the_yaml(config, key, value, setting):
    found, actual = _lookup(raw_config(config), key)
    if not found:
        assert key not in REQUIRED or config != DEFAULT_CONFIG, f"{key} must be set in our YAML, not left to verl"
        pytest.skip(f"{key} is verl's default: checked on the composed config (full tier)")
    assert same(parse_value(value), actual), f"{setting}: doc says {key}={value}, {config}.yaml has {actual!r}"


@pytest.mark.slow
def test_doc_matches_the_composed_configs(composer):
    from omegaconf import OmegaConf

    composed: dict[str, dict] = {}
    for config, key, value, setting in PINS:
        if config not in composed:
            composed[config] = OmegaConf.to_container(composer(config), resolve=False)
        found, actual = _lookup(composed[config], key)
        assert found, f"{setting}: {key} is not a key of verl 0.9.1's config ({config})"
        assert same(parse_value(value), actual), f"{setting}: doc says {key}={value}, {config} composes {actual!r}"
