"""What `suricate status` (and the other admin commands) say when the server on the embedded
default's admin port refuses this data folder's password."""

from __future__ import annotations

import argparse
from pathlib import Path

from suricate.cli.admin import CredentialsRefused
from suricate.cli.main import admin_failure


def test_a_refused_password_names_the_config_file_case_too(tmp_path: Path) -> None:
    # The README's walk: the embedded default first (it writes data/admin_api.key), then
    # `serve --config suricate.toml` in the same folder. A bare `suricate status` there
    # reaches that server with the folder's password and is refused: the message must not
    # leave the operator believing it came from "another data folder" only.
    args = argparse.Namespace(config=None, url=None, data_dir=str(tmp_path))
    err = admin_failure(args, CredentialsRefused("401"), not_running_code=3)
    assert err.code == 3
    assert "another data folder" in str(err)
    assert "with a configuration file (then give it: --config FILE)" in str(err)
