import importlib

import pytest

import modeling


@pytest.mark.parametrize("name", [n for n in modeling.__all__ if n != "__version__"])
def test_every_public_name_resolves_lazily(name):
    obj = getattr(modeling, name)
    module = importlib.import_module(f"modeling.{modeling._EXPORTS[name]}")
    assert obj is getattr(module, name)


def test_unknown_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        modeling.nope  # noqa: B018
