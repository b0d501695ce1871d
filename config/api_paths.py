"""Which requests are the integration API's (/api/, config.api).

Asked by the middleware that steps aside for the API (config.middleware), by the API's error answers
(config.api_errors) and by the logging filter that hides the API's paths (config.log_filters). Logging is
configured before the apps are loaded, so this module imports nothing that needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from django.http import HttpRequest

API_PREFIX = "/api/"


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)
