"""Settings of the daphne server that the browser tests start: the project's own, with static
files served from the apps' folders (as with DEBUG) so that no `collectstatic` is needed."""

from astron.settings import *  # noqa: F403

WHITENOISE_USE_FINDERS = True
