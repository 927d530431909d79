"""What the drill can do on this cluster, and the verdicts (pure: no I/O).

The safe subset of the lab's failure scenarios, for a real cluster in service:

* ``switchover``: the group moves to the other node (this node in standby) and back
  (standby off; ``takeover`` when auto_failback is off), each an orderly handover;
* ``service``: the group's first supervised service is killed (SIGKILL); its monitor must
  restart it here, the group staying put.  Skipped when one more failure would move the
  group (its fail count is at ``restarts``) or when the group has no supervised command;
* ``link``: one heartbeat link is cut by a firewall rule on this node for a while; the peer
  must stay "up" over the other link(s) and the group must not move.  Skipped with a single
  link: cutting it is a real failover, not a drill.

Each gives a verdict — PASS, FAIL or SKIP — with the outage the drill's own poller saw
through the site's URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kembar.config.groups import ProbeResource, ServiceResource
from kembar.config.model import ClusterConfig
from kembar.errors import KembarError

SCENARIOS = ("switchover", "service", "link")


@dataclass
class Result:
    scenario: str
    verdict: str  # PASS | FAIL | SKIP
    outage: float | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"scenario": self.scenario, "verdict": self.verdict,
                "outage": None if self.outage is None else round(self.outage, 3),
                "detail": self.detail}


def parse_scenarios(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in SCENARIOS]
    if not names or bad:
        raise KembarError(f"--scenarios {text!r}: a comma-separated list of "
                          f"{', '.join(SCENARIOS)}")
    return list(dict.fromkeys(names))


def pick_group(cfg: ClusterConfig, manager: dict[str, Any], me: str, wanted: str | None
               ) -> str:
    """The group to drill: ``wanted`` or the only one; it must run here."""
    groups = sorted(cfg.groups)
    if not groups:
        raise KembarError("the cluster file has no resource groups: nothing to drill")
    if wanted is None:
        if len(groups) > 1:
            raise KembarError(f"--group: one of {', '.join(groups)}")
        wanted = groups[0]
    if wanted not in cfg.groups:
        raise KembarError(f"--group {wanted}: no such group (known: {', '.join(groups)})")
    st = manager["groups"].get(wanted, {})
    if st.get("here") != "running":
        where = ", ".join(st.get("running_on", [])) or "no node"
        raise KembarError(f"{wanted} runs on {where}, not here ({me}): run the drill on the "
                          "node that runs the group")
    return wanted


def default_url(cfg: ClusterConfig, group: str) -> str | None:
    """The group's HTTP probe, the site's URL as users reach it."""
    for r in cfg.groups[group].resources:
        if isinstance(r, ProbeResource) and r.url:
            return r.url
    return None


def service_target(cfg: ClusterConfig, group: str, fail_counts: dict[str, int]
                   ) -> tuple[ServiceResource | None, str]:
    """(the service to kill, "") or (None, why the scenario is skipped)."""
    for r in cfg.groups[group].resources:
        if isinstance(r, ServiceResource) and r.command and not r.clone:
            count = fail_counts.get(r.describe(), 0)
            if count + 1 > r.restarts:
                return None, (f"{r.describe()} has failed {count} time(s) of {r.restarts} "
                              "allowed: one more would move the group (`kembar cleanup "
                              f"{group}` first)")
            return r, ""
    return None, "the group has no service that kembar supervises (a command)"


def link_target(links: list[str], wanted: str | None) -> tuple[str | None, str]:
    """(the heartbeat link to cut, "") or (None, why the scenario is skipped)."""
    if wanted is not None and wanted not in links:
        raise KembarError(f"--link {wanted}: not a heartbeat link here "
                          f"({', '.join(links) or 'none'})")
    if len(links) < 2:
        return None, ("one heartbeat link only: cutting it would be a real failover, not a "
                      "drill (add a second link)")
    return (wanted or links[-1]), ""


def judge(reached: bool, what: str, outage: float, max_outage: float | None) -> Result:
    """A move's verdict: its end state reached, within the allowed outage."""
    if not reached:
        return Result(what, "FAIL", outage, "did not reach its end state in time")
    if max_outage is not None and outage > max_outage:
        return Result(what, "FAIL", outage, f"outage {outage:.2f} s > --max-outage "
                                            f"{max_outage:g} s")
    return Result(what, "PASS", outage, "")
