"""Pool selection and cool-down policy (pure)."""

from cliproxy.auth.pool import BACKOFF_CAP, Member, Pool, Verdict, judge


def pool(strategy="round-robin", n=3):
    p = Pool(strategy)
    p.replace(Member(f"m{i}", f"m{i}", None) for i in range(n))
    return p


def keys(members):
    return [m.key for m in members]


def test_round_robin_rotates_and_fill_first_sticks():
    p = pool()
    firsts = [keys(p.candidates("gpt", now=0))[0] for _ in range(6)]
    assert firsts == ["m0", "m1", "m2", "m0", "m1", "m2"]
    f = pool("fill-first")
    assert [keys(f.candidates("gpt", now=0))[0] for _ in range(3)] == ["m0"] * 3


def test_cooldown_is_per_model_and_expires():
    p = pool("fill-first")
    m0 = p.get("m0")
    p.failed(m0, "gpt", Verdict(True, 60), now=100)
    assert keys(p.candidates("gpt", now=120)) == ["m1", "m2"]
    assert keys(p.candidates("other", now=120))[0] == "m0"
    assert keys(p.candidates("gpt", now=161))[0] == "m0"
    p.failed(m0, "gpt", Verdict(True, 60), now=200)
    p.succeeded(m0, "gpt")
    assert keys(p.candidates("gpt", now=201))[0] == "m0"


def test_soonest_and_exclusion():
    p = pool(n=2)
    for m in p.members:
        p.failed(m, "gpt", Verdict(True, 30 if m.key == "m0" else 90), now=0)
    assert p.soonest("gpt", now=10) == 20
    assert keys(p.candidates("gpt", exclude={"m0"}, now=100)) == ["m1"]


def test_sticky_session_with_failover():
    p = pool()
    p.succeeded(p.get("m2"), "gpt", session="conv", now=0)
    assert all(keys(p.candidates("gpt", session="conv", now=1))[0] == "m2" for _ in range(5))
    p.failed(p.get("m2"), "gpt", Verdict(True, 60), now=1)
    assert keys(p.candidates("gpt", session="conv", now=2))[0] != "m2"


def test_replace_keeps_state_of_members_that_stay():
    p = pool(n=2)
    p.failed(p.get("m1"), "gpt", Verdict(True, 60), now=0)
    p.replace([Member("m1", "m1", None), Member("m9", "m9", None)])
    assert keys(p.candidates("gpt", now=1)) == ["m9"]


def test_a_new_login_lifts_a_park_but_not_usage_limits():
    p = Pool()
    p.replace([Member("a", "a", None, credential="old"), Member("b", "b", None, credential="b")])
    p.park(p.get("a"))  # the login died
    p.failed(p.get("a"), "gpt", Verdict(True, 60), now=0)  # and the account hit its limit
    p.park(p.get("b"))
    p.replace([Member("a", "a", None, credential="old"), Member("b", "b", None, credential="b")])
    assert keys(p.candidates("other", now=100)) == []  # same files, same dead logins
    assert p.soonest("other", now=100) is None and p.count_parked("other") == 2  # waiting will not help
    p.replace([Member("a", "a", None, credential="new"), Member("b", "b", None, credential="b")])
    assert keys(p.candidates("other", now=1)) == ["a"] and keys(p.candidates("gpt", now=1)) == []


def test_members_serve_only_their_models():
    p = Pool()
    p.replace([Member("k", "k", None, frozenset({"alias"})), Member("a", "a", None)])
    assert keys(p.candidates("alias", now=0)) in (["a", "k"], ["k", "a"])
    assert keys(p.candidates("gpt", now=0)) == ["a"]


def test_judge_policy():
    assert judge(429, 120, True, 0) == Verdict(True, 120.0, usage_limit=True)  # worth a wham/usage re-read
    assert judge(429, 120, False, 0) == Verdict(True, 120.0)
    assert judge(429, None, False, 0) == Verdict(True, 1.0)
    assert judge(429, None, False, 3) == Verdict(True, 8.0)
    assert judge(429, None, False, 40).cooldown == BACKOFF_CAP
    assert judge(400, None, False, 0) == Verdict(False, None)
    assert judge(404, None, False, 0).failover is False
    assert judge(503, None, False, 0).failover is True
    assert judge(401, None, False, 0) == Verdict(True, None, park=True)  # after the caller's one refresh and retry
    assert judge(502, None, False, 0, unreachable=True) == Verdict(True, None)  # not the account's fault: no rest


def test_usage_limit_rests_are_known_and_lifted_whole():
    p = Pool()
    p.replace([Member("a", "a", None), Member("b", "b", None)])
    p.failed(p.get("a"), "gpt", judge(429, 600, True, 0), now=0)
    p.failed(p.get("b"), "gpt", judge(429, 600, False, 0), now=0)  # a plain rate limit: no quota to re-read
    assert keys(p.limited(now=1)) == ["a"] and keys(p.limited(now=700)) == []
    assert p.lift(p.get("a")) and keys(p.candidates("gpt", now=1)) == ["a"] and p.limited(now=1) == []
    assert not p.lift(p.get("a"))
