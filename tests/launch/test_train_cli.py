"""`python -m launch.train` turns bad input into one clear line, not a traceback."""

import pytest

from tests.cli_testing import one_line_error, run_train

TINY = "configs/sdit.py:tiny"


@pytest.mark.parametrize(
    "override, expected",
    [
        ("--config.model.attention=diagonal", "model.attention: expected one of"),
        ("--config.data.sampler=every_other", "data.sampler: expected one of"),
        ("--config.model.patch_size=5", "model.patch_size"),
        ("--config.model.num_heads=3", "model.num_heads"),
        ("--config.data.clip_frames=20", "data.clip_frames"),
    ],
)
def test_bad_config_gives_one_line(tmp_path, override, expected):
    last = one_line_error(run_train(TINY, tmp_path / "run", override))
    assert expected in last, last


def test_unwritable_workdir_gives_one_line(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    last = one_line_error(run_train(TINY, blocker / "run"))
    assert last.startswith("error: --workdir: cannot write to"), last
