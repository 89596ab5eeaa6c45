"""Solving services for the census site's reCAPTCHA: a client for the JSON protocol that
2captcha, CapSolver, Anti-Captcha and CapMonster share, the ``CENSUS_CAPTCHA`` setting, and
the errors a solve can end in. No Django here (``census.captcha.solver`` reads the settings).
"""

from __future__ import annotations

from census.captcha.client import SolvingClient, tls_context
from census.captcha.errors import (
    ERROR_CODES,
    CaptchaError,
    CaptchaNotSolved,
    CaptchaRequestError,
    CaptchaServiceUnavailable,
    CaptchaSolveTimeout,
    Failure,
    error_for,
    failure_for,
)
from census.captcha.services import SERVICES, CaptchaConfig, ServiceSpec, setting_problems

__all__ = [
    "ERROR_CODES",
    "SERVICES",
    "CaptchaConfig",
    "CaptchaError",
    "CaptchaNotSolved",
    "CaptchaRequestError",
    "CaptchaServiceUnavailable",
    "CaptchaSolveTimeout",
    "Failure",
    "ServiceSpec",
    "SolvingClient",
    "error_for",
    "failure_for",
    "setting_problems",
    "tls_context",
]
