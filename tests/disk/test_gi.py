"""Generation identifiers: the sync decision table, symmetry, and the safety rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kembar.disk.gi import Code, Policy, Side, decide, new_uuid

X, Y, A, B, H = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000


def side(name: str, current: int, bitmap: int = 0, history: tuple[int, int] = (0, 0),
         **kw: object) -> Side:
    return Side(name, current, bitmap, history, **kw)  # type: ignore[arg-type]


def test_new_uuid_is_nonzero_with_bit0_clear() -> None:
    for _ in range(100):
        u = new_uuid()
        assert u and not u & 1


def test_table() -> None:
    cases = [
        (side("a", 0), side("b", 0), Code.NO_SYNC),
        (side("a", X), side("b", 0), Code.SOURCE_FULL),
        (side("a", 0), side("b", X), Code.TARGET_FULL),
        (side("a", X), side("b", X), Code.NO_SYNC),
        (side("a", A, bitmap=X | 1), side("b", X), Code.SOURCE),
        (side("a", X), side("b", A, bitmap=X | 1), Code.TARGET),
        (side("a", A, history=(X, 0)), side("b", X), Code.SOURCE_FULL),
        (side("a", X), side("b", A, history=(X, 0)), Code.TARGET_FULL),
        (side("a", A, bitmap=X), side("b", B, bitmap=X), Code.SPLIT_BRAIN),
        (side("a", A, history=(H, 0)), side("b", B, history=(H, 0)), Code.SPLIT_BRAIN),
        (side("a", A), side("b", B), Code.UNRELATED),
    ]
    for me, peer, want in cases:
        assert decide(me, peer).code == want, (me, peer)


def test_crashed_primary_is_source_of_its_activity_log() -> None:
    assert decide(side("a", X, crashed_primary=True), side("b", X)).code == Code.SOURCE
    assert decide(side("a", X), side("b", X, crashed_primary=True)).code == Code.TARGET


def test_promoted_survivor_wins_over_returning_crashed_primary() -> None:
    # b was promoted after a crashed: b's bitmap UUID is a's current.
    a = side("a", X, crashed_primary=True, weight=10)
    b = side("b", Y, bitmap=X, primary=True)
    assert decide(a, b).code == Code.TARGET


def test_split_brain_policies() -> None:
    a_wrote = side("a", A, bitmap=X | 1, weight=5)  # a was Primary when they parted
    b_none = side("b", B, bitmap=X, weight=0)  # b promoted later, wrote nothing
    b_wrote = side("b", B, bitmap=X, weight=7)
    zero = Policy(after_sb_0pri="discard-zero-changes")
    assert decide(a_wrote, b_none, zero).code == Code.SOURCE
    assert decide(b_none, a_wrote, zero).code == Code.TARGET
    assert decide(a_wrote, b_wrote, zero).code == Code.SPLIT_BRAIN
    younger = Policy(after_sb_0pri="discard-younger-primary")
    assert decide(a_wrote, b_wrote, younger).code == Code.SOURCE
    older = Policy(after_sb_0pri="discard-older-primary")
    assert decide(a_wrote, b_wrote, older).code == Code.TARGET
    least = Policy(after_sb_0pri="discard-least-changes")
    assert decide(a_wrote, b_wrote, least).code == Code.TARGET
    assert decide(a_wrote, b_wrote).code == Code.SPLIT_BRAIN  # default: disconnect


def test_discard_my_data_resolves_split_brain_only() -> None:
    a = side("a", A, bitmap=X, weight=3, discard_my_data=True)
    b = side("b", B, bitmap=X, weight=3)
    assert decide(a, b).code == Code.TARGET
    assert decide(b, a).code == Code.SOURCE
    unrelated = decide(side("a", A, discard_my_data=True), side("b", B))
    assert unrelated.code == Code.UNRELATED


def test_one_primary_policies_never_discard_the_primary() -> None:
    a = side("a", A, bitmap=X, weight=3, primary=True)
    b = side("b", B, bitmap=X, weight=0)
    p = Policy(after_sb_0pri="discard-zero-changes", after_sb_1pri="discard-secondary")
    assert decide(a, b, p).code == Code.SOURCE
    consensus = Policy(after_sb_0pri="discard-zero-changes", after_sb_1pri="consensus")
    assert decide(a, b, consensus).code == Code.SOURCE
    # consensus disagrees when the 0pri rule would discard the Primary's data
    a0 = side("a", A, bitmap=X, weight=0, primary=True)
    b3 = side("b", B, bitmap=X, weight=3)
    assert decide(a0, b3, consensus).code == Code.SPLIT_BRAIN


uuids = st.sampled_from([0, X, Y, A, B, H, X | 1, A | 1])
POLICIES = st.builds(
    Policy,
    st.sampled_from(["disconnect", "discard-zero-changes", "discard-younger-primary",
                     "discard-older-primary", "discard-least-changes"]),
    st.sampled_from(["disconnect", "consensus", "discard-secondary"]),
    st.just("disconnect"))


def sides(name: str) -> st.SearchStrategy[Side]:
    # A bitmap UUID equal to the node's own current UUID never occurs: the bitmap UUID is
    # set to the current one only as a new current UUID is made (promotion while
    # disconnected, a Primary losing its peer).
    return st.builds(Side, st.just(name), uuids, uuids, st.tuples(uuids, uuids),
                     st.integers(0, 3), st.booleans(), st.booleans(), st.booleans(),
                     st.booleans(), st.booleans()).filter(
        lambda s: s.bitmap & ~1 == 0 or s.bitmap & ~1 != s.current & ~1)


@settings(max_examples=1000, deadline=None)
@given(sides("a"), sides("b"), POLICIES)
def test_decisions_mirror_and_never_discard_a_primary(a: Side, b: Side, policy: Policy) -> None:
    mine, theirs = decide(a, b, policy), decide(b, a, policy)
    assert theirs.code == mine.code.mirror()
    if a.primary:
        assert mine.code not in (Code.TARGET, Code.TARGET_FULL)
    if b.primary:
        assert mine.code not in (Code.SOURCE, Code.SOURCE_FULL)
    # split brain is never resolved silently: only a policy or discard-my-data does it
    if a.diskless or b.diskless:
        assert mine.code in (Code.NO_SYNC, Code.REFUSED)  # nothing syncs with no disk
    if (policy == Policy() and not (a.discard_my_data or b.discard_my_data)
            and not (a.diskless or b.diskless)
            and a.current & ~1 and b.current & ~1 and a.current & ~1 != b.current & ~1
            and a.bitmap & ~1 and a.bitmap & ~1 == b.bitmap & ~1
            and a.current & ~1 not in {h & ~1 for h in b.history}
            and b.current & ~1 not in {h & ~1 for h in a.history}):
        assert mine.code in (Code.SPLIT_BRAIN, Code.REFUSED)


def test_interrupted_full_sync_resumes() -> None:
    # a fresh target marked with the generation it was being synced to
    target = side("b", 0, bitmap=X)
    assert decide(target, side("a", X)).code == Code.TARGET
    assert decide(side("a", X), target).code == Code.SOURCE
    # the source moved on while apart, tracking changes since X: still a resume
    assert decide(target, side("a", A, bitmap=X | 1)).code == Code.TARGET
    # a different source generation: start over
    assert decide(target, side("a", Y)).code == Code.TARGET_FULL


def test_diskless_side_never_syncs_and_needs_a_peer_with_its_generation() -> None:
    # The peer is at the Diskless side's generation, or tracks changes since it.
    assert decide(side("a", X, diskless=True), side("b", X)).code == Code.NO_SYNC
    assert decide(side("a", X, diskless=True), side("b", Y, bitmap=X)).code == Code.NO_SYNC
    assert decide(side("a", Y, bitmap=X), side("b", X, diskless=True)).code == Code.NO_SYNC
    assert decide(side("a", X, diskless=True), side("b", X, diskless=True)).code \
        == Code.NO_SYNC
    # The Diskless side wrote a newer generation (e.g. while disconnected): the peer's
    # data lacks it and must not serve it.
    v = decide(side("a", Y, bitmap=X | 1, diskless=True, primary=True), side("b", X))
    assert v.code == Code.REFUSED and "Diskless" in v.rule
    assert decide(side("b", X), side("a", Y, bitmap=X | 1, diskless=True)).code \
        == Code.REFUSED


def test_failed_disk_resyncs_by_bitmap_from_the_tracking_peer() -> None:
    # a's disk failed at generation X (Inconsistent now); b rotated to Y tracking since X.
    a = side("a", X, consistent=False, weight=3)
    b = side("b", Y, bitmap=X, primary=True, weight=40)
    assert decide(a, b).code == Code.TARGET
    # b never rotated (no writes since): a failed disk still resyncs in full.
    assert decide(a, side("b", X)).code == Code.TARGET_FULL
