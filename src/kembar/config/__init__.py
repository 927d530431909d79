"""The cluster configuration: one TOML file, validated into frozen pydantic models.

Typical use::

    cfg = load_cluster(config_path(option))
    me = identify_node(cfg, node_option)
    disk = cfg.disk("r0")
    peer, side = disk.peer_of(me)
"""

from kembar.config.model import (
    DEFAULT_CONFIG_PATH,
    ClusterConfig,
    ClusterSection,
    DiskConfig,
    DiskHost,
    HostSection,
    NodeConfig,
    config_path,
    identify_node,
    load_cluster,
    parse_cluster,
)
from kembar.config.units import format_duration, format_size, parse_duration, parse_size

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ClusterConfig",
    "ClusterSection",
    "DiskConfig",
    "DiskHost",
    "HostSection",
    "NodeConfig",
    "config_path",
    "format_duration",
    "format_size",
    "identify_node",
    "load_cluster",
    "parse_cluster",
    "parse_duration",
    "parse_size",
]
