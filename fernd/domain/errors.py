"""Errors a command handler or the authorization step can raise.

Each error carries its wire code, HTTP status and message text, so every
transport reports it the same way.
"""

from fernd.domain.enums import Capability, LabourPhase

# InvalidCommand texts that name a missing entity are reported as not_found.
_ENTITY_NOT_FOUND_TEXTS = frozenset(
    {"Contraction not found", "Labour update not found", "Subscription not found"}
)


class LabourError(Exception):
    """A command refused by a domain rule."""

    code: str = "conflict"
    status: int = 409

    @property
    def text(self) -> str:
        raise NotImplementedError

    @property
    def message(self) -> str:
        return f"Domain error: {self.text}"

    def __str__(self) -> str:
        return self.message


class NotFound(LabourError):
    """The labour does not exist or is deleted."""

    code = "not_found"
    status = 404

    @property
    def text(self) -> str:
        return "Labour not found"

    @property
    def message(self) -> str:
        return self.text


class InvalidStateTransition(LabourError):
    def __init__(self, current: LabourPhase, target: LabourPhase) -> None:
        super().__init__(current, target)
        self.current = current
        self.target = target

    @property
    def text(self) -> str:
        return (
            f"Cannot transition from state {self.current.value} "
            f"to state {self.target.value}"
        )


class ValidationError(LabourError):
    code = "validation_error"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def text(self) -> str:
        return f"Validation error: {self.detail}"


class InvalidCommand(LabourError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        if detail in _ENTITY_NOT_FOUND_TEXTS:
            self.code = "not_found"
            self.status = 404

    @property
    def text(self) -> str:
        return f"Invalid command: {self.detail}"


class RateLimited(LabourError):
    code = "rate_limited"
    status = 429

    def __init__(self, detail: str, retry_after_seconds: int) -> None:
        super().__init__(detail)
        self.detail = detail
        self.retry_after_seconds = retry_after_seconds

    @property
    def text(self) -> str:
        return f"Rate limit exceeded: {self.detail}"


class AuthorizationDenied(Exception):
    """The caller lacks the right to run an action on a labour."""

    code = "forbidden"
    status = 403

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @classmethod
    def unassociated(cls) -> "AuthorizationDenied":
        return cls("Not associated with this labour")

    @classmethod
    def cannot_target_others(cls) -> "AuthorizationDenied":
        return cls("Can only manage your own subscription")

    @classmethod
    def missing_capability(cls, capability: Capability) -> "AuthorizationDenied":
        return cls(f"Missing required capability: {capability.value}")

    @property
    def message(self) -> str:
        return f"Authorization failed: {self.reason}"
