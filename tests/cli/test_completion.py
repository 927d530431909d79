"""``kembar completion``: the script, sourced by a real bash, completes verbs, and disk and
group names from the cluster file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kembar.cli.main import cli

BIN = os.path.dirname(sys.executable)  # where this environment's `kembar` is
CLUSTER = """
[cluster]
name = "web"
[nodes.node1]
address = "198.18.0.1"
[nodes.node2]
address = "198.18.0.2"
[disks.r0]
secret = "kb-completion"
port = 7788
[disks.r0.on.node1]
backing = "/dev/vdb"
[disks.r0.on.node2]
backing = "/dev/vdb"
[disks.www]
secret = "kb-completion"
port = 7789
[disks.www.on.node1]
backing = "/dev/vdc"
[disks.www.on.node2]
backing = "/dev/vdc"
[groups.web]
preferred = "node1"
[[groups.web.resources]]
type = "disk"
disk = "r0"
[groups.mail]
preferred = "node2"
[[groups.mail.resources]]
type = "disk"
disk = "www"
"""


@pytest.mark.parametrize("shell, marker", [
    ("bash", "complete -o nosort -F _kembar_completion kembar"),
    ("zsh", "#compdef kembar"),
    ("fish", "complete --no-files --command kembar"),
])
def test_the_script_is_printed(shell: str, marker: str) -> None:
    res = CliRunner().invoke(cli, ["completion", shell], prog_name="kembar")
    assert res.exit_code == 0, res.output
    assert marker in res.output and "_KEMBAR_COMPLETE" in res.output


def test_an_unknown_shell_is_refused() -> None:
    res = CliRunner().invoke(cli, ["completion", "tcsh"], prog_name="kembar")
    assert res.exit_code == 2 and "'tcsh' is not one of 'bash', 'zsh', 'fish'" in res.output


@pytest.fixture
def bash_complete(tmp_path: Path):  # type: ignore[no-untyped-def]
    """complete(words...) -> what bash offers for the last word, through the sourced
    script's own function, as bash calls it on TAB."""
    if shutil.which("bash") is None:
        pytest.skip("bash is not installed")
    assert shutil.which("kembar", path=BIN), f"no kembar console script in {BIN}"
    cluster = tmp_path / "cluster.toml"
    cluster.write_text(CLUSTER)
    script = tmp_path / "kembar.bash"
    script.write_text(subprocess.run([f"{BIN}/kembar", "completion", "bash"], check=True,
                                     capture_output=True, text=True).stdout)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path),
           "KEMBAR_CONFIG": str(cluster), "LANG": "C.UTF-8"}

    def complete(*words: str, config_env: bool = True) -> list[str]:
        quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in words)
        test = (f"source {script}\n"
                f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
                "_kembar_completion kembar 2>/dev/null\n"
                "printf '%s\\n' \"${COMPREPLY[@]}\"\n")
        run_env = dict(env) if config_env else {k: v for k, v in env.items()
                                                 if k != "KEMBAR_CONFIG"}
        res = subprocess.run(["bash", "--norc", "--noprofile", "-c", test], env=run_env,
                             capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return [line for line in res.stdout.splitlines() if line]
    complete.cluster = cluster  # type: ignore[attr-defined]
    return complete


def test_bash_completes_verbs(bash_complete) -> None:  # type: ignore[no-untyped-def]
    assert bash_complete("kembar", "di") == ["disk"]
    assert bash_complete("kembar", "st") == ["standby", "status"]
    assert bash_complete("kembar", "disk", "pri") == ["primary"]
    assert bash_complete("kembar", "completion", "") == ["bash", "zsh", "fish"]
    assert "--force" in bash_complete("kembar", "disk", "down", "r0", "--f")


def test_bash_completes_disk_group_and_node_names(  # type: ignore[no-untyped-def]
        bash_complete) -> None:
    assert bash_complete("kembar", "disk", "up", "") == ["r0", "www"]
    assert bash_complete("kembar", "disk", "primary", "w") == ["www"]
    assert bash_complete("kembar", "disk", "status", "r") == ["r0"]
    assert bash_complete("kembar", "disk", "resolve", "r0", "--survivor", "") == \
        ["node1", "node2"]
    assert bash_complete("kembar", "takeover", "") == ["mail", "web"]
    assert bash_complete("kembar", "takeover", "web", "") == ["mail"]  # not twice
    assert bash_complete("kembar", "cleanup", "m") == ["mail"]


def test_bash_completion_reads_the_config_option(  # type: ignore[no-untyped-def]
        bash_complete) -> None:
    cluster = str(bash_complete.cluster)
    assert bash_complete("kembar", "disk", "--config", cluster, "up", "",
                         config_env=False) == ["r0", "www"]
    # no readable cluster file: no names, and no error either
    assert bash_complete("kembar", "disk", "--config", "/nonexistent/kb.toml", "up", "",
                         config_env=False) == []
