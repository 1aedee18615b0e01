"""Detectors (read real data, confirm an emergency) and their paired injectors (break it for drills).

    from ledgerguard.detectors import get_detector, get_injector
"""

from ledgerguard.detectors.base import (
    DetectionContext,
    Detector,
    DetectorResult,
    InjectionContext,
    InjectionReport,
    Injector,
    get_detector,
    get_injector,
    known_detectors,
    known_injectors,
    register_detector,
    register_injector,
)

__all__ = [
    "DetectionContext", "Detector", "DetectorResult", "InjectionContext", "InjectionReport",
    "Injector", "get_detector", "get_injector", "known_detectors", "known_injectors",
    "register_detector", "register_injector",
]
