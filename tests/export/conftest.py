"""The session AnnyBody of the body tests."""
from tests.body.conftest import anny_body  # noqa: F401
