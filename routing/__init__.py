"""Pool selection by measured efficiency: pure Python, no Ray, clock injected."""

from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS
from routing.config import RoutingConfig, build_router, load_routing_config
from routing.errors import (
    AllPoolsSaturated,
    ModelNotServed,
    NoFeasiblePool,
    NoHealthyPool,
    ProfileError,
    RoutingConfigError,
    RoutingError,
    UnsupportedFeature,
)
from routing.framework import (
    Candidate,
    Decision,
    Filter,
    Picker,
    RankedPool,
    Router,
    SchedulingProfile,
    Scorer,
)
from routing.policies import POLICIES, SCORERS, build_policy
from routing.profile import Cell, EfficiencyProfile, ProfileBook
from routing.shape import RequestShape
from routing.state import PoolState

__all__ = [
    "AllPoolsSaturated",
    "Candidate",
    "Cell",
    "DEFAULT_BATCH_BUCKETS",
    "DEFAULT_SEQ_BUCKETS",
    "Decision",
    "EfficiencyProfile",
    "Filter",
    "ModelNotServed",
    "NoFeasiblePool",
    "NoHealthyPool",
    "POLICIES",
    "Picker",
    "PoolState",
    "ProfileBook",
    "ProfileError",
    "RankedPool",
    "RequestShape",
    "Router",
    "RoutingConfig",
    "RoutingConfigError",
    "RoutingError",
    "UnsupportedFeature",
    "SCORERS",
    "SchedulingProfile",
    "Scorer",
    "build_policy",
    "build_router",
    "load_routing_config",
]
