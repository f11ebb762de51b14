"""The session AnnyBody of the body tests."""
from tests.body.conftest import anny_body  # noqa: F401
from tests.body.conftest import smpl_files, smplx_body  # noqa: F401
