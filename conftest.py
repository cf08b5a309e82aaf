"""Names the library's docstring examples use (``pytest --doctest-modules fusion``): a bundled pair
``a, b`` (256 x 256, the MRI and PET's luminance), ``model`` (FunFuseAn with its bundled weights),
``np`` and ``fusion``."""
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _doctest_names(request):
    if type(request.node).__name__ != "DoctestItem":
        return
    import fusion
    from fusion.data import load_sample

    namespace = request.getfixturevalue("doctest_namespace")
    a, b = load_sample("axial-095")
    namespace.update(np=np, fusion=fusion, a=a, b=b, model=fusion.create_model("funfusean"))
