"""Errors of the clerk's actions, each with the HTTP status the API answers with."""

from __future__ import annotations

from gateway.errors import GatewayError


class ReviewError(GatewayError):
    """An action was refused; nothing was written."""

    status = 400


class Invalid(ReviewError):
    """The request is wrong: a missing reason, a negative result, a time outside the stop."""

    status = 422


class NotFound(ReviewError):
    """The order, downtime, held count, queue entry or user does not exist."""

    status = 404


class Conflict(ReviewError):
    """Someone changed the target since the revision the edit was based on."""

    status = 409


class Locked(ReviewError):
    """The order is confirmed: reopen it (supervisor) before correcting it."""

    status = 409


class Forbidden(ReviewError):
    """The user's role does not allow the action."""

    status = 403


class Unauthenticated(ReviewError):
    """No valid credentials."""

    status = 401
