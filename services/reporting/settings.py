"""Reporting's settings: the sections it reads (libs/common/settings.py declares them)."""

from __future__ import annotations

from libs.common.settings import BindSection, LeaseSection, LoggingSection, NatsSection, ReportingSection


class ReportingSettings(NatsSection, LoggingSection, BindSection, ReportingSection, LeaseSection):
    pass
