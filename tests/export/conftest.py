"""The session AnnyBody and tiny SMPL-X files of the body tests."""
from tests.body.conftest import anny_body, smpl_files, smplx_body  # noqa: F401
