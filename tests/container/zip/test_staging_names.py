"""The ZIP extractor names its staging folder itself (the container layer
does not import the application's helpers), and dicompack.output sweeps the
leftovers of killed runs by that name: the two must agree."""
import os

from dicompack import output
from dicompack.container.zip.extract import STAGING_MARK, staging_prefix


def test_staging_prefix_is_what_output_sweeps():
    assert STAGING_MARK == output.TMP_MARK
    assert staging_prefix("study") == output.temp_prefix("study")


def test_a_killed_runs_staging_folder_is_swept(tmp_path):
    dead = 2 ** 22 + 12345          # above the default pid_max: no such process
    leftover = tmp_path / (staging_prefix("study").replace(f"-{os.getpid()}-", f"-{dead}-") + "abc")
    leftover.mkdir()
    assert output.sweep_stale(tmp_path) and not leftover.exists()
