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


def _flat(doc: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(_flat(v, prefix + k + "."))
        else:
            out[prefix + k] = v
    return out


def test_every_ecs_field_written_is_documented_and_typed():
    """Every key of real ECS output is in schema.ECS_FIELDS or a feature path (docs and mappings)."""
    import json

    from conftest import run_cli
    r = run_cli("replay", "--sample", "-q", "-o", "-", "--local-nets", "10.0.0.0/8")
    assert r.returncode == 0
    seen: set[str] = set()
    for line in r.stdout.splitlines():
        seen |= set(_flat(json.loads(line)))
    known = {p for p, _, _ in schema.ECS_FIELDS} | {f.ecs for f in schema.feature_fields()}
    assert seen - known == set()
    # and the sample exercises nearly all of them (the VLAN/inner VLAN ones need tagged traffic, the
    # tunnel ones tunnelled traffic: tests/test_tunnels.py checks those)
    tunnel = {p for p in known if p.startswith("pyhunt.tunnel.")} | {"zeek.connection.tunnel_parents",
                                                                     "observer.ingress.interface.id"}
    assert len(known - seen - tunnel - {"network.inner.vlan.id"}) <= 2, known - seen


def test_docs_fields_md_is_generated_from_the_schema():
    path = pathlib.Path(schema.__file__).resolve().parent.parent / "docs" / "fields.md"
    if not path.exists():
        pytest.skip(f"source tree not present ({path})")
    assert path.read_text() == schema.render_fields_doc(), "run: python -m pyhunt.schema"
