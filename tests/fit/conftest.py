"""The session AnnyBody and tiny SMPL files of the body tests."""
from tests.body.conftest import anny_body, smpl_files  # noqa: F401
