import pytest

from registry.base import Registry, UnknownNameError


def test_duplicate_name_is_an_error():
    reg: Registry[int] = Registry("thing")
    reg.register("alpha")(1)
    with pytest.raises(ValueError, match="duplicate thing name 'alpha'"):
        reg.register("alpha")(2)


def test_unknown_name_lists_known_names_and_closest_match():
    reg: Registry[int] = Registry("thing")
    reg.register("kmeans")(1)
    reg.register("dbscan")(2)
    with pytest.raises(UnknownNameError) as err:
        reg.get("kmean")
    msg = str(err.value)
    assert "unknown thing 'kmean'" in msg and "kmeans, dbscan" in msg and "did you mean 'kmeans'" in msg
    assert "\n" not in msg


def test_names_in_registration_order():
    reg: Registry[int] = Registry("thing")
    for i, n in enumerate(("b", "a", "c")):
        reg.register(n)(i)
    assert reg.names() == ["b", "a", "c"] and "a" in reg and reg.get("c") == 2
