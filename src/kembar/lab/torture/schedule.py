"""The torture's fault schedule (pure): drawn from a seed, printed, replayable.

Each iteration is one fault and its recovery: the fault is injected, the cluster settles
(checked), the fault is undone (a crashed node boots, links heal, a failed disk is repaired
and attached again), the cluster settles again (checked, with the disks compared and the
filesystem checked).  The same seed and the same kinds give the same schedule.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from typing import Any, Sequence

from kembar.errors import ConfigError

NODES = ("node1", "node2")
LINKS = ("public", "private", "all")
LOSS = (10, 25, 50)  # percent of packets dropped on a link, both ways

# kind -> (weight, what it does)
KINDS: dict[str, tuple[int, str]] = {
    "crash": (3, "power cut of a node; it boots again"),
    "reboot": (1, "power cut of a node and an immediate boot"),
    "partition": (3, "the public, the private or both links cut between the nodes; healed"),
    "daemon-kill": (1, "SIGKILL of a node's cluster daemon; started again"),
    "disk-kill": (1, "SIGKILL of a node's disk process (its FUSE mount dies with it)"),
    "disk-fail": (1, "a node's backing disk fails every read and write; repaired, attached"),
    "loss": (1, "packet loss on a link of a node for a few seconds"),
}
DEFAULT_KINDS = tuple(KINDS)


@dataclass(frozen=True)
class Fault:
    i: int  # iteration, from 1
    kind: str
    node: str
    link: str = ""
    loss: int = 0

    def __str__(self) -> str:
        text = f"{self.kind} {self.node}"
        if self.kind == "partition":
            text = f"partition {self.link}"
        elif self.kind == "loss":
            text = f"loss {self.loss}% {self.node} {self.link}"
        return text

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def parse_kinds(text: str | None) -> tuple[str, ...]:
    """``--faults crash,partition`` (or all of them for None/empty): unknown kinds refused."""
    if not text:
        return DEFAULT_KINDS
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ConfigError(f"--faults {text!r}: unknown {', '.join(bad) or 'empty list'}; "
                          f"use some of {', '.join(KINDS)}")
    return tuple(dict.fromkeys(kinds))


def make_schedule(seed: int, iterations: int, kinds: Sequence[str] = DEFAULT_KINDS,
                  private: bool = True) -> list[Fault]:
    """``iterations`` faults drawn from ``seed`` (pure, deterministic).  Without a private
    link only ``all`` (= the public link) can be partitioned."""
    if iterations < 1:
        raise ConfigError(f"--iterations {iterations}: at least 1")
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or not kinds:
        raise ConfigError(f"unknown fault kinds: {', '.join(unknown) or 'none given'}")
    rng = random.Random(seed)
    names = sorted(kinds)
    weights = [KINDS[k][0] for k in names]
    links = LINKS if private else ("all",)
    out = []
    for i in range(1, iterations + 1):
        kind = rng.choices(names, weights)[0]
        node = rng.choice(NODES)
        link = rng.choice(links) if kind in ("partition", "loss") else ""
        if kind == "loss" and link == "all":
            link = "public"
        loss = rng.choice(LOSS) if kind == "loss" else 0
        out.append(Fault(i, kind, node, link, loss))
    return out
