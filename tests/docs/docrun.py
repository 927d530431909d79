"""Run the command blocks of a document (docs/*.md) on the lab's machines, as written.

A block that a test runs is a fenced ``sh`` block right after a marker line::

    <!-- run: node1 -->        on node1 (node2, client likewise)
    <!-- run: both -->         on node1 and node2 at once (two terminals)
    <!-- run: build -->        on the build machine: this host, in the source tree

and one that no test runs says why: ``<!-- untested: reason -->``.  Every ``sh`` block of a
document has one of the two (``blocks`` refuses a document otherwise), so no command can
join a document without a test or a stated reason.

What a lab cannot do as a real server does is replaced, and only that: the table
``SUBSTITUTIONS`` (line by line) and ``scp`` (a block of its own: a copy through the host's
``/tmp``, which every lab machine shares; the lab has no ssh).  Each machine runs a block in
a login-like environment (``env -i``: root's PATH, HOME=/root), not the test's: the
commands find what the document installed, never the test's own virtual environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Callable

from kembar.lab.lab import Lab

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
MARK = re.compile(r"^<!-- (run|untested): (.+?) -->$")
PLACES = ("build", "node1", "node2", "both", "client")
ROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ADDRESSES = {"198.18.0.1": "node1", "198.18.0.2": "node2"}


@dataclass(frozen=True)
class Block:
    doc: str
    line: int  # of the opening fence, 1-based
    place: str  # build, node1, node2, both, client; "" when untested
    text: str
    why: str = ""  # an untested block's reason

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(path: Path) -> list[Block]:
    """Every ``sh`` block of a document with its marker; AssertionError for a block
    without one, or a marker that is not followed by an ``sh`` block."""
    lines = path.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        mark = MARK.match(lines[i])
        if not lines[i].startswith("```"):
            if mark and not (i + 1 < len(lines) and lines[i + 1] == "```sh"):
                raise AssertionError(f"{path.name}:{i + 1}: a marker not followed by ```sh")
            i += 1
            continue
        lang = lines[i][3:].strip()
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        if end is None:
            raise AssertionError(f"{path.name}:{i + 1}: a fence that is never closed")
        if lang == "sh":
            m = MARK.match(lines[i - 1]) if i else None
            if m is None:
                raise AssertionError(f"{path.name}:{i + 1}: an sh block without a "
                                     "<!-- run: … --> or <!-- untested: … --> marker")
            body = "\n".join(lines[i + 1:end]) + "\n"
            if m.group(1) == "run":
                if m.group(2) not in PLACES:
                    raise AssertionError(f"{path.name}:{i}: run where? {m.group(2)!r}")
                out.append(Block(path.name, i + 1, m.group(2), body))
            else:
                out.append(Block(path.name, i + 1, "", body, m.group(2)))
        i = end + 1
    return out


# ----------------------------------------------------------------------- substitutions

# A shell function every node block gets: ``systemctl enable --now UNIT`` becomes
# ``kembar_doc_start_unit UNIT``, which runs the unit file's ExecStartPre= and ExecStart=
# lines (from /etc/systemd/system, where the document put it; %i is a template's instance)
# as systemd would: Type=oneshot/forking in the foreground, the rest in the background, its
# output in /run/kembar/UNIT.log (the lab has no systemd, hence no journal).
START_UNIT = r"""
kembar_doc_start_unit() {
  unit=$1
  case $unit in *.service) ;; *) unit=$unit.service ;; esac
  file=/etc/systemd/system/$unit inst=
  case $unit in
    *@?*.service) inst=${unit#*@}; inst=${inst%.service}
                  file=/etc/systemd/system/${unit%%@*}@.service ;;
  esac
  [ -f "$file" ] || { echo "kembar-doc-test: no unit file $file" >&2; return 1; }
  type=$(sed -n 's/^Type=//p' "$file" | tail -n 1)
  sed -n 's/^ExecStartPre=-\{0,1\}//p' "$file" | sed "s/%[iI]/$inst/g" |
    while read -r pre; do sh -c "$pre" || return 1; done
  start=$(sed -n 's/^ExecStart=-\{0,1\}//p' "$file" | sed "s/%[iI]/$inst/g")
  mkdir -p /run/kembar
  case $type in
    oneshot|forking) sh -c "$start" ;;
    *) setsid sh -c "exec $start" >>"/run/kembar/$unit.log" 2>&1 </dev/null & ;;
  esac
}
"""


def _start_units(m: re.Match[str]) -> str:
    return "\n".join(f"kembar_doc_start_unit {u}" for u in m.group(1).split())


# (pattern of one whole line, what replaces it, why).  Nothing else of a block is changed.
SUBSTITUTIONS: list[tuple[str, str | Callable[[re.Match[str]], str], str]] = [
    (r"apt-get update", ":",
     "the lab has no internet; the packages are the host's (the lab shares /usr)"),
    (r"apt-get install -y (.+)", r"dpkg -s \1 >/dev/null",
     "installed on the host by `make test` (its deb targets); checked, not installed"),
    (r"systemctl daemon-reload", ":", "the lab has no systemd"),
    (r"systemctl enable --now (.+)", _start_units,
     "the lab has no systemd: the unit's ExecStart runs as systemd would run it"),
]


def substitute(text: str) -> str:
    out = []
    for line in text.splitlines():
        for pattern, repl, _why in SUBSTITUTIONS:
            m = re.fullmatch(pattern, line)
            if m:
                line = repl(m) if callable(repl) else m.expand(repl)
                break
        out.append(line)
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------ running


@dataclass
class Ran:
    block: Block
    machine: str
    stdout: str
    stderr: str


@dataclass
class DocRunner:
    """Runs blocks on ``lab``'s machines with ``env`` added to root's login environment
    (e.g. pip's wheelhouse); ``repo``: where build blocks run."""

    lab: Lab
    env: dict[str, str] = field(default_factory=dict)
    repo: Path = REPO
    timeout: float = 300
    stage: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kembar-doc-")))
    ran: list[Ran] = field(default_factory=list)

    def close(self) -> None:
        shutil.rmtree(self.stage, ignore_errors=True)

    def run(self, block: Block) -> list[Ran]:
        assert block.place, f"{block.where}: untested ({block.why})"
        if _is_scp(block.text):
            return self._scp(block)
        if block.place == "build":
            res = subprocess.run(["bash", "-e", "-c", block.text], cwd=self.repo,
                                 capture_output=True, text=True, timeout=self.timeout)
            return [self._check(block, "build", res)]
        machines = ["node1", "node2"] if block.place == "both" else [block.place]
        results: dict[str, subprocess.CompletedProcess[str]] = {}

        def one(m: str) -> None:
            results[m] = self._on(m, START_UNIT + substitute(block.text))

        threads = [threading.Thread(target=one, args=(m,)) for m in machines]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [self._check(block, m, results[m]) for m in machines]

    def _on(self, machine: str, script: str) -> subprocess.CompletedProcess[str]:
        env = ["PATH=" + ROOT_PATH, "HOME=/root", "LANG=C.UTF-8", "TERM=dumb", "USER=root",
               *(f"{k}={v}" for k, v in self.env.items())]
        argv = self.lab.exec_argv(machine, ["env", "-i", *env, "bash", "-e", "-c", script])
        return subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout,
                              stdin=subprocess.DEVNULL, cwd="/")

    def _check(self, block: Block, machine: str,
               res: subprocess.CompletedProcess[str]) -> Ran:
        ran = Ran(block, machine, res.stdout, res.stderr)
        self.ran.append(ran)
        if os.environ.get("KEMBAR_DOC_VERBOSE"):  # each block's output, to quote in a doc
            print(f"=== {block.where} on {machine}: exit {res.returncode}\n"
                  f"{res.stdout}{res.stderr}")
        if res.returncode != 0:
            raise AssertionError(
                f"{block.where} on {machine}: exit {res.returncode}\n--- block\n{block.text}"
                f"--- stdout\n{res.stdout[-3000:]}\n--- stderr\n{res.stderr[-3000:]}")
        return ran

    # A copy to another machine (the lab has no ssh): the sources are copied into a
    # staging directory under the host's /tmp (every machine sees it), then from there to
    # the destination directory on the machine whose address the line names.
    def _scp(self, block: Block) -> list[Ran]:
        out = []
        for line in block.text.splitlines():
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            words = shlex.split(line)
            keep_mode = "-p" in words
            args = [w for w in words[1:] if not w.startswith("-")]
            *sources, dest = args
            host, _, ddir = dest.partition(":")
            to = ADDRESSES[host.split("@")[-1]]
            stage = Path(tempfile.mkdtemp(prefix="scp-", dir=self.stage))
            stage.chmod(0o700)
            cp = "cp -p" if keep_mode else "cp"
            if block.place == "build":
                for s in sources:
                    for f in sorted(glob(str(self.repo / s))) or [s]:
                        shutil.copy2(f, stage)
            else:
                self._check(block, block.place, self._on(
                    block.place, f"{cp} {' '.join(sources)} {shlex.quote(str(stage))}/"))
            out.append(self._check(block, to, self._on(
                to, f"{cp} {shlex.quote(str(stage))}/* {shlex.quote(ddir)}")))
        return out


def _is_scp(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    scp = [ln for ln in lines if ln.startswith("scp ")]
    assert not scp or len(scp) == len(lines), "an scp line goes in a block of its own"
    return bool(scp)


def private_dirs(lab: Lab, machine: str, dirs: tuple[str, ...]) -> None:
    """Give ``machine`` its own copy-on-write view of ``dirs`` (overlays over the host's,
    their upper layers in the machine's directory, gone with the lab), as the lab does for
    ``/etc`` and ``/var/lib``: what the document installs there stays on that machine."""
    base = lab.machine_dir(machine) / "doc-ovl"
    for d in dirs:
        name = d.strip("/").replace("/", "-")
        upper, work = base / name, base / f"{name}.work"
        upper.mkdir(parents=True)
        work.mkdir(parents=True)
        res = lab.run(machine, ["mount", "-t", "overlay", "kembar-doc", "-o",
                                f"lowerdir={d},upperdir={upper},workdir={work}", d])
        assert res.returncode == 0, f"{machine}: overlay on {d}: {res.stderr}"


def own_kembar(lab: Lab, machine: str) -> None:
    """The test's own kembar as the machine's ``/usr/local/bin/kembar`` (in a ``/usr/local``
    of the machine's own), for documents that start from an installed kembar: install.md's
    installation is followed by test_install_doc.py."""
    private_dirs(lab, machine, ("/usr/local",))
    kembar = Path(sys.executable).with_name("kembar")
    res = lab.run(machine, ["ln", "-s", str(kembar), "/usr/local/bin/kembar"])
    assert res.returncode == 0, res.stderr
