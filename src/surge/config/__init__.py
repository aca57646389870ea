"""surge.yaml: the models (`Config`), loading with `${VAR}` interpolation and every problem
located, the not-yet-supported pass, and the JSON Schema. `surge check` and `surge schema`
live in `commands.py`."""

from surge.config.loading import find_config, load, parse
from surge.config.models import Config
from surge.config.support import check_supported

__all__ = ["Config", "check_supported", "find_config", "load", "parse"]
