"""Resource agents: one module per resource type, one contract (``base.Agent``).

``make_agent(resource, ctx)`` builds the agent of a configured resource.  Agents are
synchronous and bounded by the timeout of each call; the daemon runs them in worker
threads and the group runner (``kembar.manager.group``) orders them.
"""

from __future__ import annotations

from kembar.agents.base import Agent, AgentContext, AgentError
from kembar.agents.disk import DiskAgent
from kembar.agents.filesystem import FilesystemAgent
from kembar.agents.ip import IpAgent
from kembar.agents.probe import ProbeAgent
from kembar.agents.script import ScriptAgent
from kembar.agents.service import make_service_agent
from kembar.config.groups import DiskResource, FilesystemResource, IpResource, \
    ProbeResource, Resource, ScriptResource, ServiceResource

__all__ = ["Agent", "AgentContext", "AgentError", "make_agent"]


def make_agent(resource: Resource, ctx: AgentContext | None = None) -> Agent:
    """The agent of one configured resource."""
    ctx = ctx or AgentContext()
    if isinstance(resource, IpResource):
        return IpAgent(resource, ctx)
    if isinstance(resource, DiskResource):
        return DiskAgent(resource, ctx)
    if isinstance(resource, FilesystemResource):
        return FilesystemAgent(resource, ctx)
    if isinstance(resource, ServiceResource):
        return make_service_agent(resource, ctx)
    if isinstance(resource, ScriptResource):
        return ScriptAgent(resource, ctx)
    if isinstance(resource, ProbeResource):
        return ProbeAgent(resource, ctx)
    raise TypeError(f"no agent for {type(resource).__name__}")
