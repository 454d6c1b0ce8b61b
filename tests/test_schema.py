"""The flow schema is named once: header, dtype and compiled layout agree."""
import pathlib

import numpy as np
import pytest

from pyhunt import _ext, schema


def test_generated_header_is_current():
    path = pathlib.Path(schema.__file__).resolve().parent.parent / "ext" / "ph_record.h"
    if not path.exists():  # installed without the source tree
        pytest.skip(f"source tree not present ({path})")
    assert path.read_text() == schema.render_c_header(), "run: python -m pyhunt.schema"


def test_dtype_matches_compiled_layout():
    dt = schema.dtype()
    assert dt.itemsize == _ext.RECORD_SIZE
    for name, kind, elem, count, offset in _ext.record_layout():
        assert dt.fields[name][1] == offset, name
        assert dt.fields[name][0].itemsize == elem * count, name


def test_every_feature_has_an_ecs_path_and_unique_names():
    names = [f.name for f in schema.FIELDS]
    assert len(names) == len(set(names))
    paths = [f.ecs for f in schema.feature_fields()]
    assert len(paths) == len(set(paths))
    assert all(p.startswith("pyhunt.flow.") for p in paths)
    assert np.dtype(schema.dtype()).names == tuple(names)
