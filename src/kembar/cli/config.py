"""``kembar config``: inspect, validate and import the cluster file."""

from __future__ import annotations

import glob
import os
import secrets
import stat

import click

from kembar.config import ClusterConfig, config_path, load_cluster, parse_cluster
from kembar.config.drbdconf import import_drbdconf
from kembar.config.haresources import import_haresources
from kembar.config.importer import import_authkeys, import_hacf
from kembar.config.membership import DEFAULT_AUTHKEYS
from kembar.errors import ConfigError, KembarError

DEFAULT_HACF = "/etc/ha.d/ha.cf"
DEFAULT_HA_AUTHKEYS = "/etc/ha.d/authkeys"
DEFAULT_HARESOURCES = "/etc/ha.d/haresources"
DEFAULT_DRBD_CONF = "/etc/drbd.conf"
_MAX_INPUT = 1024 * 1024


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _summary(cfg: ClusterConfig) -> str:
    """The one-line ``ok: …`` that ``check`` prints for a valid cluster file."""
    summary = f"ok: cluster '{cfg.cluster.name}', {_plural(len(cfg.nodes), 'node')}, "
    summary += _plural(len(cfg.disks), "disk")
    if cfg.disks:
        details = ", ".join(
            f"{name}: protocol {disk.protocol}, port {disk.port}" for name, disk in cfg.disks.items()
        )
        summary += f" ({details})"
    if cfg.groups:
        summary += ", " + _plural(len(cfg.groups), "group") + " (" + "; ".join(
            f"{name} on {g.preferred}: " + ", ".join(r.describe() for r in g.resources)
            for name, g in cfg.groups.items()) + ")"
    if cfg.fencing is not None:
        summary += f", fencing by {cfg.fencing.command[0]}" + (
            f" (priority delay {cfg.fencing.priority_delay:g} s)"
            if cfg.fencing.priority_delay else "")
    if cfg.web is not None:
        summary += ", dashboard on " + ", ".join(cfg.web.listen) + (
            " (password)" if cfg.web.password() is not None else " (loopback, no password)")
    if cfg.notify is not None and cfg.notify.configured():
        summary += ", hooks on " + ", ".join(cfg.notify.configured())
    if cfg.logging is not None:
        summary += ", logs to " + ", ".join(cfg.logging.targets)
    return summary


@click.group()
def config() -> None:
    """The cluster file: validate it, or import a Heartbeat + DRBD cluster into one.

    One TOML file describes the whole cluster (nodes, heartbeat media and timers, disks,
    resource groups, fencing, hooks, logging) and is the same on every node: by default
    /etc/kembar/cluster.toml, or $KEMBAR_CONFIG, or what --config names.

    \b
    Examples:
      kembar config check
      kembar config check --config /root/cluster.toml.new
      kembar config import -o /etc/kembar/cluster.toml
    """


@config.command()
@click.option(
    "-c",
    "--config",
    "path",
    metavar="PATH",
    default=None,
    help="Cluster file (default: $KEMBAR_CONFIG or /etc/kembar/cluster.toml).",
)
def check(path: str | None) -> None:
    """Validate the cluster file and print a one-line summary.

    All of it is checked, as the daemons would read it: unknown keys, bad values, the
    rules between keys (keepalive < warntime < deadtime <= initdead, ports, nodes that
    disks and groups name).  Every problem is one line, FILE: KEY: what is wrong.

    \b
    Examples:
      kembar config check
      kembar config check -c /root/new.toml && cp /root/new.toml /etc/kembar/cluster.toml

    \b
    Exit status:
      0  the file is valid
      2  it is not, or it cannot be read (a missing file included)
    """
    click.echo(_summary(load_cluster(config_path(path))))


def _read_input(path: str, private: bool) -> str:
    """The UTF-8 text of an input file; ``private``: refuse it if group or others may
    read or write it (Heartbeat refuses such an authkeys file too)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        mode = stat.S_IMODE(st.st_mode)
        if private and mode & 0o077:
            raise ConfigError(f"{path}: mode {mode:04o} lets group or others read or write "
                              f"the key file (Heartbeat refuses it too); run: chmod 600 {path}")
        if st.st_size > _MAX_INPUT:
            raise ConfigError(f"{path}: larger than {_MAX_INPUT // 1024} KiB")
        data = os.read(fd, _MAX_INPUT + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or type(exc).__name__}") from None
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: line {line}: not UTF-8 text") from None


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def _stage(path: str, text: str, mode: int) -> str:
    """Write ``text`` to a new temporary file beside ``path`` (created with ``mode``),
    flushed to disk; the caller renames it into place."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, 0o755, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        data = text.encode("utf-8")
        while data:
            data = data[os.write(fd, data):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    return tmp


def _install(staged: list[tuple[str, str]]) -> None:
    for tmp, path in staged:
        os.replace(tmp, path)
        dfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _write_all(files: list[tuple[str, str, int]]) -> None:
    """Write every (path, text, mode) or none: all are staged before any is renamed."""
    staged: list[tuple[str, str]] = []
    current = ""
    try:
        for path, text, mode in files:
            current = path
            staged.append((_stage(path, text, mode), path))
        for tmp, path in staged:
            current = path
            _install([(tmp, path)])
    except OSError as exc:
        for tmp, _ in staged:
            if os.path.lexists(tmp):
                os.unlink(tmp)
        raise KembarError(f"{current}: cannot write: {exc.strerror or type(exc).__name__}") \
            from None


def _drbd_include(pattern: str, including: str) -> list[tuple[str, str]]:
    """drbdadm's include: a glob, relative to the including file's directory, sorted; a
    pattern without wildcards must name an existing file."""
    base = os.path.dirname(including)
    full = pattern if os.path.isabs(pattern) else os.path.join(base, pattern)
    if glob.has_magic(full):
        paths = sorted(glob.glob(full))
    else:
        paths = [full]
    return [(path, _read_input(path, private=False)) for path in paths]


def _optional_input(given: str | None, default: str, notes: list[str],
                    missing: str) -> str | None:
    """The input file to read: the one given, else the default if it exists (else a note)."""
    if given is not None:
        return given
    if os.path.lexists(default):
        return default
    notes.append(f"no {default}: {missing}")
    return None


@config.command("import")
@click.option("--hacf", metavar="PATH", default=DEFAULT_HACF, show_default=True,
              help="Heartbeat's ha.cf to convert.")
@click.option("--authkeys", "authkeys", metavar="PATH", default=None,
              help=f"Heartbeat's authkeys to convert (default {DEFAULT_HA_AUTHKEYS}, "
                   "skipped with a note if absent).")
@click.option("--haresources", metavar="PATH", default=None,
              help=f"Heartbeat's haresources to convert into resource groups (default "
                   f"{DEFAULT_HARESOURCES}, skipped with a note if absent).")
@click.option("--drbd-conf", "drbd_conf", metavar="PATH", default=None,
              help=f"DRBD's drbd.conf to convert into disks, includes followed (default "
                   f"{DEFAULT_DRBD_CONF}, skipped with a note if absent).")
@click.option("--name", metavar="CLUSTER", default=None,
              help="Cluster name (default: ha.cf's 'cluster', else 'ha').")
@click.option("-o", "--output", metavar="PATH", default=None,
              help="Write the cluster file here (default: standard output).")
@click.option("--authkeys-output", metavar="PATH", default=DEFAULT_AUTHKEYS, show_default=True,
              help="Where kembar's key file goes (written mode 600; named in the cluster file).")
@click.option("--force", is_flag=True, help="Replace existing output files.")
def import_(hacf: str, authkeys: str | None, haresources: str | None, drbd_conf: str | None,
            name: str | None, output: str | None, authkeys_output: str, force: bool) -> None:
    """Convert a Heartbeat + DRBD cluster into one kembar cluster file.

    Reads ha.cf, authkeys, haresources and drbd.conf (the last three are skipped with a note
    when absent) and writes the cluster file, each value with a comment naming its source
    line, and kembar's key file (mode 600).  ha.cf's logging directives become [logging],
    DRBD's split-brain and local-io-error handlers [notify].  Every directive that cannot be
    carried over, or is changed, is reported on stderr as `kembar: note: ...`.  Nothing is
    written if anything is wrong, and no file is replaced without --force.

    \b
    Examples:
      kembar config import                          # to standard output, from /etc/ha.d
      kembar config import -o /etc/kembar/cluster.toml
      kembar config import --hacf ha.cf --drbd-conf drbd.conf -o cluster.toml
    """
    keys_out = os.path.abspath(authkeys_output)
    text = _read_input(hacf, private=False)
    result = import_hacf(text, hacf, None if keys_out == DEFAULT_AUTHKEYS else keys_out, name)
    notes = list(result.notes)
    nodes = list(parse_cluster(result.toml, hacf).nodes)
    toml = result.toml
    inputs = [hacf]

    drbd_in = _optional_input(drbd_conf, DEFAULT_DRBD_CONF, notes, "no disks converted")
    devices: dict[str, str] = {}
    if drbd_in is not None:
        disks, drbd_notes, devices = import_drbdconf(_read_input(drbd_in, private=False),
                                                     drbd_in, nodes, _drbd_include)
        notes += drbd_notes
        toml += "\n" + disks if disks else ""
        inputs.append(drbd_in)
    res_in = _optional_input(haresources, DEFAULT_HARESOURCES, notes,
                             "no resource groups converted")
    if res_in is not None:
        groups, group_notes = import_haresources(_read_input(res_in, private=False), res_in,
                                                 nodes, devices)
        notes += group_notes
        toml += "\n" + groups if groups else ""
        inputs.append(res_in)
    try:
        cfg = parse_cluster(toml, output or "<stdout>")
    except ConfigError as exc:
        raise ConfigError(f"the converted cluster file is not valid, nothing written: {exc}") \
            from None
    secret_inside = any(disk.secret is not None for disk in cfg.disks.values())
    if cfg.disks and all(any(node in disk.on for disk in cfg.disks.values()) for node in nodes):
        # ha.cf alone asks for node addresses before disks are added: drbd.conf gave them.
        notes = [n for n in notes if "ha.cf has no node addresses" not in n]

    keys_in = authkeys
    if keys_in is None:
        if os.path.lexists(DEFAULT_HA_AUTHKEYS):
            keys_in = DEFAULT_HA_AUTHKEYS
        else:
            notes.append(f"no {DEFAULT_HA_AUTHKEYS}: no key file converted; create {keys_out} "
                         "(mode 600) with 'auth 1' and '1 sha256 SECRET' before starting kembar")
    files: list[tuple[str, str, int]] = []
    if output is not None:
        files.append((output, toml, 0o600 if secret_inside else 0o644))
    if keys_in is not None:
        converted, key_notes = import_authkeys(_read_input(keys_in, private=True), keys_in)
        notes += key_notes
        files.append((keys_out, converted, 0o600))
        if _same_file(keys_in, keys_out):
            raise ConfigError(f"{keys_out}: is the input authkeys file; choose another "
                              "--authkeys-output")
    if output is not None:
        for path in inputs:
            if _same_file(output, path):
                raise ConfigError(f"{output}: is the input {os.path.basename(path)}; choose "
                                  "another --output")
        if keys_in is not None and _same_file(output, keys_out):
            raise ConfigError(f"{output}: is also the --authkeys-output file")
    for path, _, _ in files:
        if os.path.isdir(path):
            raise ConfigError(f"{path}: is a directory")
        if os.path.lexists(path) and not force:
            raise ConfigError(f"{path} exists: not overwritten (use --force to replace it)")

    summary = _summary(cfg)
    for note in notes:
        click.echo(f"kembar: note: {note}", err=True)
    _write_all(files)
    written = [f"{path} (mode {mode:o})" if mode == 0o600 else path for path, _, mode in files]
    if output is None:
        click.echo(toml, nl=False)
        click.echo(f"kembar: {summary}" + (f"; wrote {written[0]}" if written else ""), err=True)
    else:
        click.echo(f"{summary}; wrote {' and '.join(written)}")
