"""Detect stage: confirm the signal against the agency's real data."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import DEFAULT

from ledgerguard.models import Detection
from ledgerguard.response.detection import run_detectors
from ledgerguard.response.models import ResponseRequest
from ledgerguard.runtime import get_runtime


@task(name="detect", retries=1, retry_delay_seconds=2, cache_policy=DEFAULT, persist_result=True)
def detect(request: ResponseRequest) -> Detection:
    runtime = get_runtime()
    entry = runtime.catalog.get(request.emergency_type)
    detection = run_detectors(
        entry=entry, agency=runtime.agency, resource=request.resource,
        scratch_dir=runtime.settings.scratch_dir / "detect", params_override=request.detector_params,
        now=request.observed_at,
    )
    logger = get_run_logger()
    for finding in detection.findings:
        logger.warning("%s: %s", finding.detector, finding.summary)
    for reason in detection.clear_reasons:
        logger.info("quiet: %s", reason)
    return detection
