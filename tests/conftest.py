import sys
from pathlib import Path

import pytest

# tests/helpers.py is importable as `helpers`
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def snapped(tmp_path_factory):
    """A folder with the lively tiny student (``student.pt``), it snapped onto Loihi's grid
    (``snapped.pt``), exported (``snapped.nir``) and quantised (``snapped.q.nir``); one per
    session (tests/test_snap.py, tests/test_lava_stock.py): about 35 s on 2 cores."""
    from helpers import save_tiny_student

    from mksgn.convert.export_service import export_checkpoint
    from mksgn.convert.quantize_service import quantize_file
    from mksgn.convert.snap_cli import main as snap_main

    tmp = tmp_path_factory.mktemp("snap")
    save_tiny_student(tmp / "student.pt", seed=3)
    code = snap_main([str(tmp / "student.pt"), "-o", str(tmp / "snapped.pt"), "--samples", "8", "--quiet"])
    assert code == 0
    export_checkpoint(str(tmp / "snapped.pt"), tmp / "snapped.nir", samples=2, log=lambda *_: None)
    quantize_file(tmp / "snapped.nir", tmp / "snapped.q.nir", samples=8)
    return tmp
