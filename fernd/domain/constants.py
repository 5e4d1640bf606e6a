"""Numeric limits of the labour domain, named as the wire contract names them."""

from typing import Final

# A new announcement needs strictly more than this many seconds since the last.
ANNOUNCEMENT_COOLDOWN_SECONDS: Final = 10

# Phase progression averages the newest contractions that have an intensity.
RECENT_CONTRACTION_COUNT: Final = 3
TRANSITION_INTENSITY_THRESHOLD: Final = 8.0
TRANSITION_DURATION_THRESHOLD_MINS: Final = 1.5
ACTIVE_INTENSITY_THRESHOLD: Final = 6.0
ACTIVE_DURATION_THRESHOLD_MINS: Final = 1.0

CONTRACTION_MIN_INTENSITY: Final = 0
CONTRACTION_MAX_INTENSITY: Final = 10

# Client clocks drift, so a contraction time may lie this far in the future.
CONTRACTION_FUTURE_TOLERANCE_SECONDS: Final = 60

# Lengths count Unicode code points.
LABOUR_NAME_MAX_LENGTH: Final = 255
LABOUR_UPDATE_MAX_LENGTH: Final = 1000
COMPLETION_NOTES_MAX_LENGTH: Final = 5000
EMAIL_MAX_LENGTH: Final = 254

# Applies to an HTTP request body and to one WebSocket frame.
MAX_REQUEST_BODY_BYTES: Final = 65536

SUBSCRIPTION_TOKEN_LENGTH: Final = 8
# A to Z without I and O, digits 2 to 9: no symbol can be misread as another.
SUBSCRIPTION_TOKEN_ALPHABET: Final = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"

LABOUR_INVITE_LIMIT: Final = 10
LABOUR_INVITE_WINDOW_SECONDS: Final = 86400

IDEMPOTENCY_RETENTION_DAYS: Final = 7
IDEMPOTENCY_KEY_MAX_LENGTH: Final = 255

# A projector that failed this many times in a row is skipped until a rebuild.
MAX_PROJECTOR_ERROR_COUNT: Final = 5
DEFAULT_BATCH_SIZE: Final = 10000

# An effect is tried at most this many times; the n-th failure waits 2**n s.
MAX_RETRY_ATTEMPTS: Final = 6

PAGE_SIZE_DEFAULT: Final = 20
PAGE_SIZE_MAX: Final = 100
SUBSCRIPTIONS_PAGE_SIZE: Final = 100

INTERNAL_USER_PREFIX: Final = "fern-labour-internal-"
INTERNAL_ISSUER: Final = "internal"
PROCESS_MANAGER_USER_ID: Final = "fern-labour-internal-process-manager"
