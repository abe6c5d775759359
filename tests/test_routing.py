import pytest

from flowlet.errors import ConfigError
from flowlet.routing import RouteTable, parse_path


def table(*paths):
    t = RouteTable("/api")
    for p in paths:
        t.add(parse_path(p, ("f.yaml", 1)), p)
    return t


def first(t, path):
    return next(t.match(path), (None, None))


def test_static_path_matches_exactly():
    t = table("/hello")
    assert first(t, "/api/hello") == ("/hello", {})
    assert first(t, "/api/hello/") == (None, None)
    assert first(t, "/hello") == (None, None)


def test_int_parameter_is_typed():
    t = table("/user/{id:int}")
    assert first(t, "/api/user/42") == ("/user/{id:int}", {"id": 42})
    assert first(t, "/api/user/-7") == ("/user/{id:int}", {"id": -7})


def test_int_parameter_refuses_non_digits_and_overflow():
    t = table("/user/{id:int}")
    assert first(t, "/api/user/abc") == (None, None)
    assert first(t, "/api/user/1.5") == (None, None)
    assert first(t, "/api/user/" + "9" * 30) == (None, None)


def test_str_parameter_takes_one_segment():
    t = table("/user/{name}")
    assert first(t, "/api/user/ada") == ("/user/{name}", {"name": "ada"})
    assert first(t, "/api/user/ada/x") == (None, None)
    assert first(t, "/api/user/") == (None, None)


def test_static_segment_wins_over_parameter():
    t = table("/user/{id}", "/user/me")
    assert first(t, "/api/user/me") == ("/user/me", {})
    assert first(t, "/api/user/you") == ("/user/{id}", {"id": "you"})


def test_int_before_str_and_both_are_candidates():
    t = table("/u/{name}", "/u/{id:int}")
    assert [e for e, _ in t.match("/api/u/5")] == ["/u/{id:int}", "/u/{name}"]


def test_same_prefix_different_param_names_keep_their_names():
    t = table("/a/{x:int}/one", "/a/{y:int}/two")
    assert first(t, "/api/a/1/one") == ("/a/{x:int}/one", {"x": 1})
    assert first(t, "/api/a/2/two") == ("/a/{y:int}/two", {"y": 2})


@pytest.mark.parametrize("bad", ["user", "/user/", "//x", "/u/{id", "/u/{id:float}", "/u/{1x}",
                                 "/u/{a}/{a}", "/u/a{b}", "/u/sp ace"])
def test_bad_patterns_are_load_errors(bad):
    with pytest.raises(ConfigError) as e:
        parse_path(bad, ("flows/x.yaml", 3))
    assert str(e.value).startswith("flows/x.yaml:3: error:")


def test_lookup_cost_does_not_grow_with_endpoints():
    # Not a timing test: the static lookup is one dict access and the trie walk is bounded by depth.
    t = table(*[f"/r{i}/{{id:int}}" for i in range(1000)])
    assert first(t, "/api/r999/3") == ("/r999/{id:int}", {"id": 3})
