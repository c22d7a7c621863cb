"""images/: what README.md lists exists, and the diagram's source renders and tells the real ports.

The pictures themselves come from `make images` (python -m coursekit.docs.images), a manual step
against a real running stack; it is not part of the test suite.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from coursekit.docs.html_pictures import debug_excerpt, info_excerpt
from coursekit.grade import REPO_ROOT, Grade
from coursekit.native.compose import load_compose

IMAGES = REPO_ROOT / "images"
DOT = IMAGES / "architecture.dot"


def referenced_files() -> set[str]:
    """Every local file README.md links to: [text](file) and ![alt](file)."""
    text = (IMAGES / "README.md").read_text(encoding="utf-8")
    return {target for target in re.findall(r"\]\(([^)#\s]+)\)", text) if "://" not in target}


def test_every_picture_in_the_readme_exists():
    files = referenced_files()
    assert {"architecture.dot", "architecture.svg", "architecture.png"} <= files
    missing = sorted(name for name in files if not (IMAGES / name).is_file())
    assert not missing, f"images/README.md lists files that do not exist: {missing}"


def test_every_picture_is_listed_and_small():
    pictures = {p.name for p in IMAGES.iterdir() if p.suffix in (".png", ".svg")}
    assert pictures - referenced_files() == set(), "pictures in images/ that README.md does not describe"
    for name in pictures:
        assert (IMAGES / name).stat().st_size < 400 * 1024, f"{name} is over 400 KB"


def test_diagram_shows_the_published_ports():
    services = load_compose(Grade.named("G0_Trainee").deploy_dir / "docker-compose.yml", {})
    text = DOT.read_text(encoding="utf-8")
    for service in services.values():
        for port in service.published.values():
            assert f"127.0.0.1:{port}" in text, f"{service.name}'s port {port} is not in architecture.dot"


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed (apt-get install graphviz)")
def test_diagram_source_renders():
    result = subprocess.run(["dot", "-Tsvg", str(DOT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "<svg" in result.stdout and "load_shops_to_dwh" in result.stdout


def test_log_excerpts_pick_the_start_and_one_whole_tick():
    log = "\n".join(
        [
            "2026-01-01T00:00:00Z INFO shop New-York: seed 101",
            "2026-01-01T00:00:00Z DEBUG tick 1 at 2026-01-01T00:00:00+00:00: begin",
            "2026-01-01T00:00:00Z DEBUG tick 1 updated customers: 2 rows, ids [1, 2]",
            "2026-01-01T00:00:00Z INFO tick 1 New-York: +3 customers",
            "2026-01-01T00:00:10Z DEBUG SQL: select now()",
            "2026-01-01T00:00:10Z DEBUG tick 2 at 2026-01-01T00:00:10+00:00: begin",
            "2026-01-01T00:00:10Z DEBUG tick 2 updated customers: 1 rows, ids [4]",  # unfinished: no summary yet
        ]
    )
    assert info_excerpt(log, 1) == ["2026-01-01T00:00:00Z INFO shop New-York: seed 101"]
    number, lines = debug_excerpt(log)
    assert number == 1 and lines[0].endswith("begin") and lines[-1].endswith("+3 customers") and len(lines) == 3
