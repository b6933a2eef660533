"""One request and its response, as both sides of the relay see it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from sockproxy import audit
from sockproxy.framing import RequestHead, ResponseHead
from sockproxy.metrics import Metrics
from sockproxy.policy import Decision
from sockproxy.routes import Route


@dataclass(slots=True, eq=False)
class Exchange:
    head: RequestHead
    route: Route
    decision: Decision
    policy: str
    started: float = field(default_factory=time.monotonic)
    response: ResponseHead | None = None
    status: int | None = None  # what the client was answered, ours or the engine's
    request_sent: bool = False  # the whole request reached the engine
    body_consumed: bool = False  # the request body was read off the client connection
    inspected_body: bytes | None = None  # the body policy saw, forwarded as it is
    sent_head: bytes | None = None  # a rewritten head to send instead of head.raw
    bytes_in: int = 0  # client -> engine, heads included
    bytes_out: int = 0  # engine -> client, heads included
    identity: Mapping[str, object] | None = None  # who is calling, as audited
    policy_digest: str = ""
    forwarded: float = 0.0  # when its first byte went to the engine
    engine_seconds: float | None = None  # forwarded -> the engine's response head
    listener: str = ""
    metrics: Metrics | None = None
    stream: str = ""  # "stream" (a long-lived response) or "hijack" once it became one
    recorded: bool = False

    @property
    def response_started(self) -> bool:
        return self.bytes_out > 0

    def record(self) -> None:
        """Emit the audit event, once."""
        if self.recorded:
            return
        self.recorded = True
        metrics = self.metrics
        if metrics is not None:
            decision = self.decision
            verdict = "deny" if not decision.allowed else "warn" if decision.warnings else "allow"
            response = self.response
            metrics.request_done(
                listener=self.listener,
                operation=self.route.operation,
                decision=verdict,
                rule=decision.rule,
                status=response.status if response is not None else None,
                engine_seconds=self.engine_seconds,
            )
            if self.stream:
                metrics.stream_closed(self.stream)
        audit.record(
            method=self.head.method,
            path=self.route.path,
            operation=self.route.operation,
            allowed=self.decision.allowed,
            rule=self.decision.rule,
            warnings=[w.audit_fields() for w in self.decision.warnings],
            status=self.status,
            duration=time.monotonic() - self.started,
            bytes_in=self.bytes_in,
            bytes_out=self.bytes_out,
            policy=self.policy,
            policy_digest=self.policy_digest,
            reason=self.decision.reason,
            identity=self.identity,
            engine_ms=self.engine_seconds,
        )
