"""The registry of key exchange methods: one entry per KeMethod (except NONE).

    from kem import registry
    m = registry.get(KeMethod.ML_KEM_768)        # or registry.by_keyword("mlkem768")
    ke = m.initiator(); kei = ke.public_value     # initiator
    ker, secret = m.respond(kei)                  # responder
    assert ke.finish(ker) == secret

Providers load lazily, on the first use of ``available``/``provider``/exchanges, and are tried
in preference order, the fastest first (ML-KEM: liboqs > cryptography > pqcrypto, measured in
bench/README.md); the first that loads wins. ``PQIKE_KE_PROVIDERS`` (comma-separated provider
names, e.g. ``cryptography``) puts those first wherever they provide a method; a name that is no
provider is refused by the entry points (``providers_env_problem``), never ignored. ``sizes``
needs no provider: it is the specification's (kem.sizes), which every provider must match.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kem.base import Backend, Initiator, Kind, ProviderInfo, Sizes
from kem.errors import MethodUnavailable, ProviderUnavailable, UnknownMethod
from kem.ids import KEYWORDS, KeMethod, log_name
from kem.sizes import SIZES

# Provider name -> module in kem.providers (imported on first use).
_PROVIDER_MODULES = {
    "cryptography-dh": "kem.providers.modp",
    "cryptography-ec": "kem.providers.ecp",
    "cryptography-xdh": "kem.providers.xdh",
    "cryptography": "kem.providers.mlkem_pyca",
    "liboqs": "kem.providers.liboqs",
    "pqcrypto": "kem.providers.pqcrypto",
}


@dataclass(frozen=True)
class _Spec:
    kind: Kind
    nist_level: int | None
    providers: tuple[str, ...]


_MODP = _Spec(Kind.DH, None, ("cryptography-dh",))
_ECP = _Spec(Kind.DH, None, ("cryptography-ec",))
_XDH = _Spec(Kind.DH, None, ("cryptography-xdh",))


def _mlkem(level: int) -> _Spec:
    # liboqs' ML-KEM is 3-4x faster than cryptography's (OpenSSL 3.5) here: keygen + encaps +
    # decaps 0.048 vs 0.165 ms for ML-KEM-768 (bench/README.md, "KE providers")
    return _Spec(Kind.KEM, level, ("liboqs", "cryptography", "pqcrypto"))


def _oqs(level: int) -> _Spec:
    return _Spec(Kind.KEM, level, ("liboqs",))


PROVIDERS_ENV = "PQIKE_KE_PROVIDERS"


def providers_env_problem() -> str | None:
    """Why $PQIKE_KE_PROVIDERS cannot be honoured (a name that is no provider), or None.

    A typo would otherwise leave the default order in place while the operator believes the
    choice took effect; the daemon, the CLI and ``python -m kem`` refuse to start instead."""
    wanted = [w.strip() for w in os.environ.get(PROVIDERS_ENV, "").split(",") if w.strip()]
    unknown = [w for w in wanted if w not in _PROVIDER_MODULES]
    if not unknown:
        return None
    return (
        f"{PROVIDERS_ENV}: unknown provider {', '.join(repr(w) for w in unknown)} "
        f"(known: {', '.join(sorted(_PROVIDER_MODULES))})"
    )


def _preferred(names: tuple[str, ...]) -> tuple[str, ...]:
    """``names`` with those listed in $PQIKE_KE_PROVIDERS moved to the front, in that order."""
    wanted = [w.strip() for w in os.environ.get(PROVIDERS_ENV, "").split(",") if w.strip()]
    first = tuple(w for w in wanted if w in names)
    return first + tuple(n for n in names if n not in first)


_SPECS: dict[KeMethod, _Spec] = {
    **{m: _MODP for m in KeMethod if m.name.startswith("MODP_")},
    **{m: _ECP for m in KeMethod if m.name.startswith("ECP_")},
    KeMethod.CURVE_25519: _XDH,
    KeMethod.CURVE_448: _XDH,
    KeMethod.ML_KEM_512: _mlkem(1),
    KeMethod.ML_KEM_768: _mlkem(3),
    KeMethod.ML_KEM_1024: _mlkem(5),
    **{m: _oqs(int(m.name[-1])) for m in KeMethod if m.name[:-1].endswith("_L")},
}


class Method:
    """A registry entry: static facts plus the lazily chosen provider."""

    def __init__(self, method: KeMethod, spec: _Spec) -> None:
        self.id = method
        self.kind = spec.kind
        self.nist_level = spec.nist_level  # NIST PQC security category; None for classic DH
        self.keywords: tuple[str, ...] = tuple(w for w, m in KEYWORDS.items() if m == method)
        self.log_name = log_name(method)
        self.provider_names = _preferred(spec.providers)  # preference order
        self.sizes: Sizes = SIZES[method]  # the specification's; providers are checked against it
        self._lock = threading.Lock()
        self._backends: dict[str, Backend | str] = {}  # name -> backend or failure reason
        # backend()'s answer, fixed once found (_load keeps what it got), with the table
        # it came from: a table swapped (a test hiding a provider) is asked again
        self._preferred: tuple[dict[str, Backend | str], Backend] | None = None

    @property
    def keyword(self) -> str:
        return self.keywords[0]

    def _load(self, name: str) -> Backend | str:
        loaded = self._backends.get(name)  # set once and never changed: no lock to read it
        if loaded is not None:
            return loaded
        with self._lock:
            if name not in self._backends:
                try:
                    module = importlib.import_module(_PROVIDER_MODULES[name])
                    self._backends[name] = self._checked(name, module.backend(self.id))
                except ProviderUnavailable as exc:
                    self._backends[name] = exc.reason
                except ImportError as exc:
                    self._backends[name] = f"{name}: {exc}"
            return self._backends[name]

    def _checked(self, name: str, backend: Backend) -> Backend | str:
        # Peers send the specified sizes: a provider with others (another algorithm version
        # behind the same name) could not interoperate, and plans would not match the wire.
        if backend.sizes == self.sizes:
            return backend
        return (
            f"{backend.provider} reports sizes {_sizes_text(backend.sizes)} for "
            f"{self.log_name}, not the specified {_sizes_text(self.sizes)}"
        )

    def backend(self, provider: str | None = None) -> Backend:
        """The preferred available backend, or the named provider's; MethodUnavailable if none."""
        preferred = self._preferred
        if provider is None and preferred is not None and preferred[0] is self._backends:
            return preferred[1]  # each key exchange asks: no walk over the providers
        names = self.provider_names if provider is None else (provider,)
        if provider is not None and provider not in self.provider_names:
            raise MethodUnavailable(self.id, f"{provider} does not provide {self.log_name}")
        reasons: list[str] = []
        for name in names:
            result = self._load(name)
            if isinstance(result, Backend):
                if provider is None:
                    self._preferred = (self._backends, result)
                return result
            if result not in reasons:
                reasons.append(result)
        raise MethodUnavailable(self.id, "; ".join(reasons))

    def backends(self) -> list[Backend]:
        """Every available provider's backend, in preference order (for cross-checks)."""
        found = [self._load(name) for name in self.provider_names]
        return [b for b in found if isinstance(b, Backend)]

    def provider_status(self) -> dict[str, str]:
        """Each provider in preference order: "ok" or why it cannot be used."""
        return {
            name: "ok" if isinstance(r, Backend) else r
            for name in self.provider_names
            for r in [self._load(name)]
        }

    @property
    def available(self) -> bool:
        return self.unavailable_reason is None

    @property
    def unavailable_reason(self) -> str | None:
        try:
            self.backend()
        except MethodUnavailable as exc:
            return exc.reason
        return None

    @property
    def provider(self) -> ProviderInfo | None:
        return self.backend().provider if self.available else None

    def initiator(self) -> Initiator:
        """Start an exchange as initiator; send ``.public_value``, then ``.finish(KEr data)``."""
        return self.backend().initiator()

    def respond(self, initiator_value: bytes) -> tuple[bytes, bytes]:
        """Responder side: ``(responder_value, shared_secret)``."""
        return self.backend().respond(initiator_value)

    def respond_later(self, initiator_value: bytes) -> tuple[bytes, Callable[[], bytes]]:
        """Responder side, the shared secret derived when asked (Backend.respond_later)."""
        return self.backend().respond_later(initiator_value)

    def describe(self) -> dict[str, Any]:
        """Plain data for ``python -m kem --json``."""
        reason = self.unavailable_reason
        sizes = self.sizes
        provider = self.provider
        return {
            "id": int(self.id),
            "keyword": self.keyword,
            "keywords": list(self.keywords),
            "name": self.log_name,
            "kind": str(self.kind),
            "nist_level": self.nist_level,
            "public_value": sizes.public_value,
            "responder_value": sizes.responder_value,
            "shared_secret": sizes.shared_secret,
            "provider": provider.name if provider else None,
            "provider_version": provider.version if provider else None,
            "provider_detail": provider.detail if provider else None,
            "available": reason is None,
            "unavailable_reason": reason,
            "providers": self.provider_status(),
        }

    def __repr__(self) -> str:
        return f"<Method {self.log_name} ({int(self.id)})>"


def _sizes_text(s: Sizes) -> str:
    return f"{s.public_value}/{s.responder_value}/{s.shared_secret}"


_METHODS: dict[KeMethod, Method] = {m: Method(m, spec) for m, spec in _SPECS.items()}


def get(method: int | KeMethod) -> Method:
    """The entry for an IANA/private ID; UnknownMethod (a KeyError) if there is none."""
    found = _METHODS.get(method)  # an int finds its KeMethod key: no enum call per KE payload
    if found is not None:
        return found
    try:
        return _METHODS[KeMethod(method)]
    except (ValueError, KeyError):
        raise UnknownMethod(method) from None


def by_keyword(word: str) -> Method:
    """The entry for a strongSwan proposal keyword (``mlkem768``, ``x25519``, ``ecp256``)."""
    try:
        return _METHODS[KEYWORDS[word.lower()]]
    except KeyError:
        raise UnknownMethod(word) from None


def all() -> tuple[Method, ...]:  # shadows the builtin inside this module only
    """Every entry, by ID."""
    return tuple(_METHODS[m] for m in sorted(_METHODS))
