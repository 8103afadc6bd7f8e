"""Pool selection by measured efficiency: pure Python, no Ray, clock injected."""

from routing.buckets import DEFAULT_BATCH_BUCKETS, DEFAULT_SEQ_BUCKETS
from routing.config import RoutingConfig, build_policy, build_router, load_routing_config
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
    Dropped,
    Filter,
    Picker,
    RankedPool,
    Router,
    SchedulingProfile,
    Scorer,
)
from routing.plugins import PLUGINS, SCORERS
from routing.predictor import LatencyPredictor, Prediction
from routing.presets import DEFAULT_POLICY, POLICIES, PRESETS
from routing.profile import Cell, EfficiencyProfile, ProfileBook
from routing.shape import RequestShape
from routing.state import PoolState, RateMeter, SentLoad, TargetTracker

__all__ = [
    "AllPoolsSaturated",
    "Candidate",
    "Cell",
    "DEFAULT_BATCH_BUCKETS",
    "DEFAULT_POLICY",
    "DEFAULT_SEQ_BUCKETS",
    "Decision",
    "Dropped",
    "EfficiencyProfile",
    "Filter",
    "LatencyPredictor",
    "ModelNotServed",
    "NoFeasiblePool",
    "NoHealthyPool",
    "PLUGINS",
    "POLICIES",
    "PRESETS",
    "Picker",
    "PoolState",
    "Prediction",
    "ProfileBook",
    "ProfileError",
    "RateMeter",
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
    "SentLoad",
    "TargetTracker",
    "build_policy",
    "build_router",
    "load_routing_config",
]
