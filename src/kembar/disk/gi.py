"""Generation identifiers: who syncs from whom, decided as DRBD does (pure logic, no I/O).

Each side brings its generation identifiers (current, bitmap, two history), the weight of
its bitmap, its role and two flags.  ``decide(me, peer, policy)`` returns what *this* side
does; ``decide(peer, me, policy)`` always returns the mirror image (tested with hypothesis),
so the two processes agree without a tie-breaking round trip; they still exchange their
codes and drop the connection if the codes are not mirror images.

Bit 0 of a bitmap UUID records whether the node was Primary when it started the bitmap
(DRBD keeps the role in the low bit): it decides ``discard-younger-primary``.  It is masked
off for every comparison.

Rules, in order (numbers follow DRBD's ``uuid_compare`` where there is one):
 5 either side Diskless                 -> no sync: a disk that is not attached neither sends
                                           nor receives (the one with a disk tracks changes);
                                           refused when the other side is not at (or tracking
                                           since) the Diskless side's generation
 10 both current UUIDs empty            -> no sync, both stay Inconsistent
 15 one side empty, but its bitmap UUID names the other's generation (or bitmap UUID)
                                        -> an interrupted full sync: resume it (bitmap)
 20/30 one side empty                   -> full sync from the other
 40 equal current                        -> no sync; a crashed Primary is source of its
                                           activity-log extents; marked bits (online verify)
                                           travel from the Primary, else from the lower name
 50 peer bitmap == my current            -> bitmap resync, I am target
 60 peer history == my current           -> full sync, I am target
 70 my bitmap == peer current            -> bitmap resync, I am source
 80 my history == peer current           -> full sync, I am source
 90 equal bitmap UUIDs                   -> split brain with a common parent (policies apply)
100 any history in common                -> split brain, manual recovery only
    nothing in common                    -> unrelated data: refuse, always
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import IntEnum

MASK = ~1 & 0xFFFF_FFFF_FFFF_FFFF


def new_uuid() -> int:
    """A fresh, non-zero generation identifier with bit 0 clear."""
    while True:
        value = int.from_bytes(os.urandom(8), "big") & MASK
        if value:
            return value


class Code(IntEnum):
    """The outcome from one side's point of view; the peer's code is the mirror image."""

    NO_SYNC = 0
    SOURCE = 1  # bitmap resync, I send
    TARGET = -1  # bitmap resync, I receive
    SOURCE_FULL = 2
    TARGET_FULL = -2
    SPLIT_BRAIN = 100  # unresolved: disconnect and stay StandAlone
    UNRELATED = 1000  # no common history: refuse, always
    REFUSED = 99  # a resolution would make a Primary lose its data: disconnect

    def mirror(self) -> Code:
        if self in (Code.SOURCE, Code.TARGET, Code.SOURCE_FULL, Code.TARGET_FULL):
            return Code(-int(self))
        return self

    @property
    def is_sync(self) -> bool:
        return self in (Code.SOURCE, Code.TARGET, Code.SOURCE_FULL, Code.TARGET_FULL)

    @property
    def full(self) -> bool:
        return self in (Code.SOURCE_FULL, Code.TARGET_FULL)


@dataclass(frozen=True)
class Side:
    name: str
    current: int
    bitmap: int = 0
    history: tuple[int, int] = (0, 0)
    weight: int = 0  # blocks marked out of sync
    primary: bool = False
    crashed_primary: bool = False
    discard_my_data: bool = False
    consistent: bool = True
    diskless: bool = False  # no backing store attached (detached after an I/O error)


@dataclass(frozen=True)
class Policy:
    after_sb_0pri: str = "disconnect"
    after_sb_1pri: str = "disconnect"
    after_sb_2pri: str = "disconnect"


@dataclass(frozen=True)
class Verdict:
    code: Code
    rule: str  # the rule that decided, for the log line

    def __str__(self) -> str:
        return f"{self.code.name.lower().replace('_', '-')} by rule={self.rule}"


def _m(u: int) -> int:
    return u & MASK


def compare(me: Side, peer: Side) -> Verdict:
    """The raw UUID comparison (no policies); SPLIT_BRAIN means 'policies may resolve'."""
    s, p = _m(me.current), _m(peer.current)
    if me.diskless or peer.diskless:
        return _diskless(me, peer)
    if s == 0 and p == 0:
        return Verdict(Code.NO_SYNC, "both-fresh")
    if s == 0 and _resumes(me, peer):
        return Verdict(Code.TARGET, "resume-full-sync")
    if p == 0 and _resumes(peer, me):
        return Verdict(Code.SOURCE, "resume-full-sync")
    if s == 0:
        return Verdict(Code.TARGET_FULL, "i-am-fresh")
    if p == 0:
        return Verdict(Code.SOURCE_FULL, "peer-is-fresh")
    if s == p:
        return _equal_current(me, peer)
    if _m(peer.bitmap) == s:
        return Verdict(Code.TARGET, "bitmap-peer")
    if s in {_m(h) for h in peer.history} - {0}:
        return Verdict(Code.TARGET_FULL, "history-peer")
    if _m(me.bitmap) == p:
        return Verdict(Code.SOURCE, "bitmap-self")
    if p in {_m(h) for h in me.history} - {0}:
        return Verdict(Code.SOURCE_FULL, "history-self")
    if _m(me.bitmap) and _m(me.bitmap) == _m(peer.bitmap):
        return Verdict(Code.SPLIT_BRAIN, "bitmap-both")
    mine = {_m(u) for u in (me.bitmap, *me.history)} - {0}
    theirs = {_m(u) for u in (peer.bitmap, *peer.history)} - {0}
    if mine & theirs:
        return Verdict(Code.SPLIT_BRAIN, "history-both")
    return Verdict(Code.UNRELATED, "unrelated")


def _diskless(me: Side, peer: Side) -> Verdict:
    """Nothing syncs to or from a Diskless side.  Its peer may serve its I/O only if the
    peer has every write the Diskless side's disk had: the peer is at that generation, or
    tracks changes since it (its bitmap UUID names it); otherwise refuse."""
    if me.diskless and peer.diskless:
        return Verdict(Code.NO_SYNC, "both-diskless")
    dl, good = (me, peer) if me.diskless else (peer, me)
    gen = _m(dl.current)
    if gen == 0 or gen in (_m(good.current), _m(good.bitmap)):
        return Verdict(Code.NO_SYNC, "diskless")
    return Verdict(Code.REFUSED, f"{dl.name} is Diskless and {good.name} lacks data of "
                                 f"{dl.name}'s generation {gen:016X}")


def _resumes(target: Side, source: Side) -> bool:
    """A fresh target records, in its bitmap UUID, the generation it is being fully synced
    to; while the source is still at that generation (or tracks changes since it), the
    interrupted full sync resumes from the source's bitmap instead of starting over."""
    marker = _m(target.bitmap)
    return bool(marker) and marker in {_m(source.current), _m(source.bitmap)}


def _equal_current(me: Side, peer: Side) -> Verdict:
    if me.consistent != peer.consistent:
        return Verdict(Code.SOURCE_FULL if me.consistent else Code.TARGET_FULL,
                       "equal-but-inconsistent")
    if me.crashed_primary and peer.crashed_primary:
        return Verdict(Code.SOURCE if me.name < peer.name else Code.TARGET, "crashed-both")
    if me.crashed_primary:
        return Verdict(Code.SOURCE, "crashed-primary-self")
    if peer.crashed_primary:
        return Verdict(Code.TARGET, "crashed-primary-peer")
    if me.weight or peer.weight:
        if me.primary != peer.primary:
            return Verdict(Code.SOURCE if me.primary else Code.TARGET, "marked-primary")
        return Verdict(Code.SOURCE if me.name < peer.name else Code.TARGET, "marked-name")
    return Verdict(Code.NO_SYNC, "equal")


def _zero_changes(me: Side, peer: Side) -> Code | None:
    if me.weight == 0 and peer.weight > 0:
        return Code.TARGET
    if peer.weight == 0 and me.weight > 0:
        return Code.SOURCE
    if me.weight == 0 and peer.weight == 0:
        return Code.SOURCE if me.name < peer.name else Code.TARGET
    return None


def _primary_at_split(side: Side) -> bool:
    return bool(side.bitmap & 1)


def _asb_0pri(policy: str, me: Side, peer: Side) -> Code | None:
    if policy == "discard-zero-changes":
        return _zero_changes(me, peer)
    if policy in ("discard-younger-primary", "discard-older-primary"):
        mine, theirs = _primary_at_split(me), _primary_at_split(peer)
        if mine == theirs:
            return None
        older_is_me = mine  # primary when the split happened = the older primary
        keep_me = older_is_me if policy == "discard-younger-primary" else not older_is_me
        return Code.SOURCE if keep_me else Code.TARGET
    if policy == "discard-least-changes":
        if me.weight == peer.weight:
            return None
        return Code.SOURCE if me.weight > peer.weight else Code.TARGET
    return None


def _resolve(me: Side, peer: Side, policy: Policy) -> tuple[Code | None, str]:
    """Try to resolve a split brain with common parent; None = stays split brain."""
    primaries = int(me.primary) + int(peer.primary)
    if primaries == 0:
        return _asb_0pri(policy.after_sb_0pri, me, peer), f"after-sb-0pri={policy.after_sb_0pri}"
    if primaries == 1:
        name = f"after-sb-1pri={policy.after_sb_1pri}"
        secondary_loses = Code.TARGET if not me.primary else Code.SOURCE
        if policy.after_sb_1pri == "discard-secondary":
            return secondary_loses, name
        if policy.after_sb_1pri == "consensus":
            code = _asb_0pri(policy.after_sb_0pri, me, peer)
            return (code if code == secondary_loses else None), name
        return None, name
    return None, f"after-sb-2pri={policy.after_sb_2pri}"


def decide(me: Side, peer: Side, policy: Policy = Policy()) -> Verdict:
    """What this side does on connect: the comparison, then split-brain recovery.

    Always evaluated from the side with the smaller name and mirrored for the other, so
    the two sides agree even on combinations no honest history produces.
    """
    if me.name > peer.name:
        theirs = _decide(peer, me, policy)
        return Verdict(theirs.code.mirror(), theirs.rule)
    return _decide(me, peer, policy)


def _decide(me: Side, peer: Side, policy: Policy) -> Verdict:
    verdict = compare(me, peer)
    code = verdict.code
    if code in (Code.SPLIT_BRAIN,) and (me.discard_my_data or peer.discard_my_data):
        if me.discard_my_data and peer.discard_my_data:
            return Verdict(Code.SPLIT_BRAIN, f"{verdict.rule}+both-discard-my-data")
        full = verdict.rule != "bitmap-both"
        if me.discard_my_data:
            code = Code.TARGET_FULL if full else Code.TARGET
        else:
            code = Code.SOURCE_FULL if full else Code.SOURCE
        verdict = Verdict(code, f"{verdict.rule}+discard-my-data")
    elif code == Code.SPLIT_BRAIN and verdict.rule == "bitmap-both":
        resolved, how = _resolve(me, peer, policy)
        if resolved is None:
            return Verdict(Code.SPLIT_BRAIN, f"bitmap-both, {how}")
        verdict = Verdict(resolved, f"bitmap-both+{how}")
        code = resolved
    # Never make a Primary the target of a resync: its data is in use.
    if code in (Code.TARGET, Code.TARGET_FULL) and me.primary:
        return Verdict(Code.REFUSED, f"{verdict.rule}, but {me.name} is Primary and would lose its data")
    if code in (Code.SOURCE, Code.SOURCE_FULL) and peer.primary:
        return Verdict(Code.REFUSED, f"{verdict.rule}, but {peer.name} is Primary and would lose its data")
    return verdict
