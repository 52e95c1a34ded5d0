"""Settings of the daphne server that the browser tests start: the project's own, with static
files served from the apps' folders (as with DEBUG) so that no `collectstatic` is needed."""

import tempfile
from pathlib import Path

from astron.settings import *  # noqa: F403

WHITENOISE_USE_FINDERS = True

# Nothing collected: the pages' scripts come from the apps' folders as they are now, never
# from an earlier `collectstatic` into data/static (which astron.static serves first).
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="astron-browser-static-"))
