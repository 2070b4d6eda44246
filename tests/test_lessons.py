"""Every lesson notebook runs top to bottom in a fresh kernel, its assert cells included."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("nbclient", reason="the lessons need the test extra: pip install -e '.[test]'")

RUNNER = Path(__file__).resolve().parents[1] / "lessons" / "run_lessons.py"
spec = importlib.util.spec_from_file_location("run_lessons", RUNNER)
run_lessons = importlib.util.module_from_spec(spec)
spec.loader.exec_module(run_lessons)

LESSONS = run_lessons.lesson_paths()


def test_all_twelve_lessons_are_there():
    assert [p.name[:2] for p in LESSONS] == [f"{i:02d}" for i in range(1, 13)]


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem for p in LESSONS])
def test_lesson_runs_top_to_bottom(path):
    notebook, _ = run_lessons.execute(path, save=False)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    assert code_cells, f"{path.name} has no code"
    # the lesson ends in checks: its last code cell asserts something
    assert "assert" in code_cells[-1].source, f"{path.name} must end with an assert cell"
