"""Who is calling, and may they: client certificates mapped to roles, checked per service (DESIGN 5).

The TLS handshake already proved that the client holds a key certified by the federation's CA. This
interceptor reads that certificate back from the call's auth context and decides: silo certificates may
call the silo-facing service only, operator certificates the admin service only, revoked serials nothing.
Whether a silo acts under its own name is checked by the servicer (`require_own_identity`), since the
name travels in the request messages.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from aslora_coordinator.errors import FederationError
from aslora_coordinator.handler_wrapping import Behavior, StreamingBehavior, wrap_handler
from aslora_rpc.certificates import CertificateError, Role, load_certificate, load_identity, read_deny_list
from aslora_rpc.error_codes import ErrorCode

LOGGER = logging.getLogger(__name__)
PEER_CERT_KEY = "x509_pem_cert"
"""The auth-context property holding the client's verified certificate (PEM)."""
PEER_NAME_KEY = "x509_common_name"
SERVICE_ROLES = {"aslora.v1.Federation": Role.SILO, "aslora.v1.Admin": Role.OPERATOR}
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})
"""Services any authenticated peer (or a plaintext probe on the health port) may call."""
PARSED_CERTIFICATE_CACHE = 256


@dataclass(frozen=True)
class Caller:
    """A verified client: the role and name its certificate states, and its serial number."""

    role: Role
    name: str
    serial: int


class DenyList:
    """The revoked serial numbers, re-read whenever the deny-list file changes (no restart needed)."""

    def __init__(self, path: Path | None) -> None:
        """`path` is a `revoked.json` written by `aslora certs revoke`; None: nothing is revoked."""
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._serials: frozenset[int] = frozenset()

    def contains(self, serial: int) -> bool:
        """Whether `serial` is revoked; a missing or unreadable deny list revokes everyone (fail closed)."""
        if self._path is None:
            return False
        with self._lock:
            try:
                info = os.stat(self._path)
            except OSError:
                LOGGER.error("the deny list %s is gone: refusing every client", self._path)
                return True
            stamp = (info.st_mtime_ns, info.st_size)
            if stamp != self._stamp:
                try:
                    self._serials = read_deny_list(self._path)
                except (CertificateError, OSError):
                    LOGGER.error("the deny list %s cannot be read: refusing every client", self._path)
                    return True
                LOGGER.info("deny list %s loaded: %d revoked serial(s)", self._path, len(self._serials))
            self._stamp = stamp
            return serial in self._serials


@functools.lru_cache(maxsize=PARSED_CERTIFICATE_CACHE)
def _caller_from_pem(pem: bytes) -> Caller:
    certificate = load_certificate(pem)
    identity = load_identity(certificate)
    return Caller(role=identity.role, name=identity.name, serial=certificate.serial_number)


def authenticate(context: grpc.ServicerContext, deny_list: DenyList) -> Caller:
    """The verified caller of this call; UNAUTHENTICATED without a usable certificate or when revoked."""
    certificates = context.auth_context().get(PEER_CERT_KEY)
    if not certificates:
        raise FederationError(ErrorCode.UNAUTHENTICATED, "the call carries no client certificate")
    try:
        caller = _caller_from_pem(bytes(next(iter(certificates))))
    except CertificateError as error:
        raise FederationError(ErrorCode.UNAUTHENTICATED, str(error)) from error
    if deny_list.contains(caller.serial):
        raise FederationError(ErrorCode.CERTIFICATE_REVOKED, f"serial {caller.serial:x}")
    return caller


def authorize(caller: Caller, service: str, allowed_silos: Collection[str] | None) -> None:
    """PERMISSION_DENIED unless the caller's role is the one `service` serves (and, for silos, allowed)."""
    if service in OPEN_SERVICES:
        return
    wanted = SERVICE_ROLES.get(service)
    if wanted is None or caller.role is not wanted:
        raise FederationError(ErrorCode.WRONG_ROLE, f"{caller.role.value} certificate {caller.name!r}")
    if wanted is Role.SILO and allowed_silos is not None and caller.name not in allowed_silos:
        raise FederationError(ErrorCode.SILO_NOT_ALLOWED, caller.name)


def require_own_identity(context: grpc.ServicerContext, claimed: str) -> None:
    """PERMISSION_DENIED when a certificate-authenticated silo names another silo in its request.

    Without TLS (`--insecure`, loopback only) there is no certificate, and the claimed name stands.
    """
    names = context.auth_context().get(PEER_NAME_KEY)
    if not names:
        return
    name = bytes(next(iter(names))).decode("utf-8", errors="replace")
    if claimed != name:
        raise FederationError(ErrorCode.IDENTITY_MISMATCH, f"certificate {name!r}, request {claimed!r}")


def _service_of(method: str) -> str:
    """`/package.Service/Method` -> `package.Service`."""
    return method.strip("/").split("/", 1)[0]


class AuthorizationInterceptor(grpc.ServerInterceptor):
    """Authenticates and authorizes every call before its handler runs (installed with mutual TLS only)."""

    def __init__(self, deny_list: DenyList, allowed_silos: Collection[str] | None) -> None:
        """`allowed_silos`: silo names admitted (None: every silo certificate of the CA)."""
        self._deny_list = deny_list
        self._allowed_silos = None if allowed_silos is None else frozenset(allowed_silos)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The same handler, preceded by the checks."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        service = _service_of(handler_call_details.method)

        def single(behavior: Behavior) -> Behavior:
            def guarded(request: Any, context: grpc.ServicerContext) -> Any:
                self._check(context, service)
                return behavior(request, context)

            return guarded

        def streaming(behavior: StreamingBehavior) -> StreamingBehavior:
            def guarded(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                self._check(context, service)
                yield from behavior(request, context)

            return guarded

        return wrap_handler(handler, single, streaming)

    def _check(self, context: grpc.ServicerContext, service: str) -> None:
        caller = authenticate(context, self._deny_list)
        authorize(caller, service, self._allowed_silos)
