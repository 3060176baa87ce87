"""Where the repository's files are, for tests that read them: its root and the real event JSON files."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
TEMPLATE = ROOT / "template.yaml"
