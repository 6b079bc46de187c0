"""The demo's report table, as a person reads it."""

from __future__ import annotations

import pytest

from shopper.demo.report import render_report


def test_nested_measures_are_a_line_each_in_full(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    version = "20261207T110619Z-3fa9c0d2"
    render_report(
        {
            "traffic": "simulator",
            "serve_p99_ms": 3.2,
            "flash_sale": {"items": 12, "viral_item": "sku-0140"},
            "model": {"version": version, "ranker": {"skipped": "not asked for"}},
        }
    )
    out = capsys.readouterr().out
    lines = [line.strip(" │") for line in out.splitlines()]
    assert any(line.startswith("flash_sale ") and line.endswith(" items=12") for line in lines)
    assert any(line.endswith("viral_item=sku-0140") for line in lines)
    assert any(line.endswith(f"version={version}") for line in lines)  # not cut short
    assert any(line.endswith("ranker.skipped=not asked for") for line in lines)
    assert "{" not in out and "…" not in out
    assert "< 5 ms ok" in out
