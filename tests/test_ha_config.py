"""The Patroni files shipped in deploy/ha say what the local cluster tool writes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ioc.ha.config import SHIPPED, Timing, dynamic

HA = Path(__file__).resolve().parent.parent / "deploy" / "ha"


@pytest.mark.parametrize("name", ["patroni-node1.yml", "patroni-node2.yml"])
def test_shipped_cluster_settings_match_the_tool(name: str) -> None:
    shipped = yaml.safe_load((HA / name).read_text(encoding="utf-8"))
    assert shipped["bootstrap"]["dcs"] == dynamic(SHIPPED)


def test_patroni_timing_rule_is_enforced() -> None:
    with pytest.raises(ValueError, match="must not exceed ttl 20"):
        Timing(ttl=20, loop_wait=10, retry_timeout=10)
