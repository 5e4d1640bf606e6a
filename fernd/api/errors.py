"""API errors: every failure is reported as `{"message", "code"}`."""

import msgspec


class ApiError(Exception):
    """A request refused before it reaches a labour; carries its reply."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


class ErrorBody(msgspec.Struct, frozen=True):
    message: str
    code: str


_encoder = msgspec.json.Encoder()


def error_body(code: str, message: str) -> bytes:
    return _encoder.encode(ErrorBody(message=message, code=code))


def invalid_request(message: str = "Failed to parse request body") -> ApiError:
    return ApiError(400, "invalid_request", message)


def not_found(message: str) -> ApiError:
    return ApiError(404, "not_found", message)


NOT_AUTHENTICATED = "Unauthorised: Not Authenticated"
VERIFICATION_FAILED = "Unauthorised: User verification failed"
