"""The optimizer core: typed inputs, the HiGHS LP, four strategies, auto selection, grid tariffs.

Pure and fast (numpy + highspy only): the planner around it supplies time, forecasts and config, runs
`optimize` off the event loop, and falls back to `fallback_self_consumption_plan` when a solve fails.
"""
from .auto import AutoChoice, AutoThresholds, choose_strategy, situation_figures
from .inputs import (PlanInputError, PlanInputs, leading_finite_steps, plan_inputs_from_config,
                     resample_mean)
from .model import DEFAULT_TIME_LIMIT_S, build_model, diagnose_infeasible, optimize, solve_model
from .plan import PLAN_STATUSES, Plan, PlanStep, fallback_self_consumption_plan
from .strategies import STRATEGIES, STRATEGY_NAMES, get_strategy

__all__ = [
    "AutoChoice", "AutoThresholds", "choose_strategy", "situation_figures",
    "PlanInputError", "PlanInputs", "leading_finite_steps", "plan_inputs_from_config", "resample_mean",
    "DEFAULT_TIME_LIMIT_S", "build_model", "diagnose_infeasible", "optimize", "solve_model",
    "PLAN_STATUSES", "Plan", "PlanStep", "fallback_self_consumption_plan",
    "STRATEGIES", "STRATEGY_NAMES", "get_strategy",
]
