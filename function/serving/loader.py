"""Which model answers a request: lazy, thread-safe loading, pointer refresh, canary split, fallbacks, shadow.

The first request loads the bundle the pointer names (concurrent first requests wait for that one load).
Afterwards the pointer is re-read at most every `pointer_ttl_s`; one thread refreshes while the others
keep answering from the model in hand, so a promotion never fails a request. The fallback chain is the
pointer's stable version, then its previous versions newest first, then the model shipped in the code.

The pointer's shadow is loaded like its canary, but never answers: `shadow_model` names it for the requests of
its share, which the shadow worker (function/serving/shadow.py) scores again after they are answered. A shadow
that cannot be loaded is reported by `status` (and tried again at every pointer check), never raised.

Request threads read the serving state without a lock, so it is never changed in place: a refresh builds
a new immutable `_State` and publishes it with one reference assignment. A request sees the state from
before a swap or the one after it, never a mixture.
"""
from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from function.serving.shadow import SHADOW_BOOSTER_THREADS, ShadowStats
from shared.bundle import CorruptBundle, models_prefix, read_bundle
from shared.model import ServingModel, load_model
from shared.pointer import ServingPointer, read_pointer
from shared.settings import Settings
from shared.store import LocalStore, NotFound, Store, StoreUnavailable, open_store

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "shipped_model"
SHADOW_BUCKETS = 10_000  # a request's shadow key (a hash of its id) falls in [0, SHADOW_BUCKETS)
log = logging.getLogger(__name__)


class NoModel(Exception):
    """No model at all could be loaded: not from the store, not the shipped one."""


@dataclass(frozen=True)
class Choice:
    """The model chosen for one request, and how it was chosen."""

    model: ServingModel
    fallback: bool
    role: str  # "stable", "canary", "fallback" or "shipped"
    cold: bool = False  # this request waited for a model load (first request, or a newly promoted model)


@dataclass(frozen=True)
class _State:
    """What requests are served from; published whole, never modified (derive a new one with `replace`)."""

    stable: ServingModel
    stable_role: str
    canary: ServingModel | None
    canary_percent: float
    generation: int | None  # pointer generation this state reflects; None when the store was not read
    next_check: float
    checked_at: float
    storage_error: str | None = None
    failures: int = 0
    served: tuple[str, ...] = ()  # every version a request may pin: stable, canary, then the kept fallbacks
    shadow: ServingModel | None = None  # loaded; None when the pointer names none or it could not be loaded
    shadow_percent: float = 0.0
    shadow_stats: ShadowStats | None = None  # set whenever the pointer names a shadow, loaded or not
    shadow_error: str | None = None  # why the named shadow could not be loaded

    def store_models(self) -> dict[str, ServingModel]:
        """A new dict of the loaded store versions in hand, so a refresh need not load them again (not the shadow:
        it is loaded on its own, see `_with_shadow`)."""
        return {m.version: m for m in (self.stable, self.canary) if m is not None and m.source == "store"}


class ModelLoader:
    """Holds one model's serving state for one process; `choose` is all a request needs."""

    def __init__(self, settings: Settings, store_factory: Callable[[], Store] | None = None,
                 clock: Callable[[], float] = time.monotonic, name: str | None = None) -> None:
        self.settings = settings
        self.name = name or settings.default_model
        self._store_factory = store_factory or (lambda: open_store(settings.model_store, settings.storage_timeout_s))
        self._store: Store | None = None
        self._shipped_dir = Path(settings.shipped_model_dir) if settings.shipped_model_dir else SHIPPED_DIR
        self._clock = clock
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._pinned: dict[str, ServingModel] = {}  # fallback versions loaded because a request named them

    def choose(self, key: int = 0) -> Choice:
        """The model for a request whose canary key is `key` (0-9999); raises NoModel."""
        state = self._state
        cold = False
        if state is None or self._clock() >= state.next_check:
            cold = self._refresh(blocking=state is None)
            state = self._state
            if state is None:
                raise NoModel("no model could be loaded")
        if state.canary is not None and key < state.canary_percent * 100:
            return Choice(state.canary, False, "canary", cold)
        return Choice(state.stable, state.stable_role != "stable", state.stable_role, cold)

    def shadow_model(self, request_id: str) -> tuple[ServingModel, ShadowStats] | None:
        """The shadow version (and its counters) when it is to score this request too: its share of requests,
        chosen by a hash of the request's id; None without a loaded shadow."""
        state = self._state
        shadow = state.shadow if state is not None else None
        if shadow is None:
            return None
        percent = state.shadow_percent
        if percent < 100 and zlib.crc32(request_id.encode()) % SHADOW_BUCKETS >= percent * 100:
            return None
        return shadow, state.shadow_stats

    def read_beside(self, version: str, filename: str) -> bytes:
        """A file of a version's folder in the store that is not part of its bundle (its model card); NotFound or
        StoreUnavailable."""
        if self._store is None:
            self._store = self._store_factory()
        return self._store.read(f"{models_prefix(self.name)}{version}/{filename}")[0]

    def versions(self) -> list[str]:
        """The versions a request may pin (stable, canary, kept fallbacks); empty before the first load."""
        state = self._state
        return list(state.served) if state else []

    def pinned(self, version: str) -> Choice | None:
        """The named version if it is served or kept as a fallback (loaded on first use), else None."""
        if self._state is None:
            self.choose(0)
        state = self._state
        for model, role in ((state.stable, state.stable_role), (state.canary, "canary")):
            if model is not None and model.version == version:
                return Choice(model, role not in ("stable", "canary"), role)
        if version not in state.served:
            return None
        model = self._pinned.get(version)
        if model is None:
            with self._lock:
                cache = dict(self._pinned)
                model = self._load_cached(version, cache)
                self._pinned = {v: m for v, m in cache.items() if v in state.served}
        return Choice(model, True, "fallback") if model is not None else None

    def status(self) -> dict:
        """What /health reports (without triggering a load)."""
        state = self._state
        if state is None:
            return {"ready": False}
        return {
            "ready": True,
            "model_version": state.stable.version,
            "fallback": state.stable_role != "stable",
            "serving": state.stable_role,
            "canary": {"version": state.canary.version, "percent": state.canary_percent} if state.canary else None,
            "shadow": self._shadow_status(state),
            "storage_error": state.storage_error,
            "pointer_checked_s_ago": round(self._clock() - state.checked_at, 3),
        }

    @staticmethod
    def _shadow_status(state: _State) -> dict | None:
        """The shadow's version, share, state (ok, or broken and why) and counts; None without one."""
        stats = state.shadow_stats
        if stats is None:
            return None
        error = state.shadow_error or stats.error
        return {"version": stats.version, "percent": state.shadow_percent, "state": "broken" if error else "ok",
                "reason": error, **stats.counts()}

    def _refresh(self, blocking: bool) -> bool:
        """Re-read the pointer; True when this call loaded a model the process was not serving."""
        if not self._lock.acquire(blocking=blocking):
            return False  # another thread is refreshing; keep serving what we have
        try:
            state = self._state
            if state is not None and self._clock() < state.next_check:
                return False
            new = self._resolve(state)
            self._state = new
            if new is None:
                return False
            held = (state.stable, state.canary, state.shadow) if state else ()
            before = {m.version for m in held if m is not None}
            return any(m is not None and m.version not in before for m in (new.stable, new.canary, new.shadow))
        finally:
            self._lock.release()

    def _resolve(self, state: _State | None) -> _State | None:
        now = self._clock()
        try:
            if self._store is None:
                self._store = self._store_factory()
            pointer, generation = read_pointer(self._store, self.name)
        except (StoreUnavailable, ValueError, KeyError, TypeError) as exc:
            return self._storage_failed(state, f"{type(exc).__name__}: {exc}", now)
        except Exception as exc:  # a client that cannot even be built (no credentials...) is a storage fault
            return self._storage_failed(state, f"{type(exc).__name__}", now)
        ttl = self.settings.pointer_ttl_s
        if state is not None and state.generation == generation and state.storage_error is None \
                and state.shadow_error is None:
            return replace(state, next_check=now + ttl, checked_at=now)
        cache = state.store_models() if state else {}  # private to this refresh: no published state holds it
        if pointer is None:
            return self._shipped_state(now, now + ttl, None, generation) or state
        stable, role = self._first_loadable(pointer, cache)
        if stable is None:
            log.error("no version in the pointer's chain could be loaded; serving the shipped model")
            return self._shipped_state(now, now + ttl, None, generation) or state
        canary = self._load_cached(pointer.canary, cache) if pointer.canary else None
        served = tuple(dict.fromkeys([stable.version, *([canary.version] if canary else []), *pointer.chain()]))
        new = _State(stable, role, canary, pointer.canary_percent if canary else 0.0, generation, now + ttl, now,
                     served=served)
        return self._with_shadow(new, pointer, state)

    def _with_shadow(self, new: _State, pointer: ServingPointer, state: _State | None) -> _State:
        """`new` with the pointer's shadow loaded (or the reason it cannot be), its counters kept while the version
        stays the same; a shadow that is the answering version is no shadow."""
        version = pointer.shadow
        if version is None or version == new.stable.version:
            return new
        old = state.shadow_stats if state is not None else None
        stats = old if old is not None and old.version == version else ShadowStats(version)
        model, error = state.shadow if state is not None else None, None
        if model is None or model.version != version:
            try:  # its own copy even when it also serves: one XGBoost thread, see SHADOW_BOOSTER_THREADS
                model = load_model(self.name, read_bundle(self._store, self.name, version), "store",
                                   self.settings.fast_predictor_max_rows, SHADOW_BOOSTER_THREADS)
            except Exception as exc:  # whatever is wrong with a shadow, the answers must not notice
                error = f"{type(exc).__name__}: {exc}"[:300]
                log.error("shadow version %s unusable: %s", version, error)
        return replace(new, shadow=model, shadow_percent=pointer.shadow_percent, shadow_stats=stats,
                       shadow_error=error)

    def _first_loadable(self, pointer: ServingPointer, cache: dict) -> tuple[ServingModel | None, str]:
        for i, version in enumerate(pointer.chain()):
            model = self._load_cached(version, cache)
            if model is not None:
                return model, "stable" if i == 0 else "fallback"
        return None, "shipped"

    def _load_cached(self, version: str, cache: dict) -> ServingModel | None:
        if version in cache:
            return cache[version]
        try:
            bundle = read_bundle(self._store, self.name, version)
            model = load_model(self.name, bundle, "store", self.settings.fast_predictor_max_rows)
        except (NotFound, CorruptBundle, StoreUnavailable) as exc:
            log.error("model version %s unusable: %s", version, exc)
            return None
        cache[version] = model
        return model

    def _storage_failed(self, state: _State | None, error: str, now: float) -> _State | None:
        failures = (state.failures if state else 0) + 1
        retry_at = now + min(self.settings.storage_retry_max_s, 0.5 * 2 ** (failures - 1))
        log.error("model store unreachable (%s); retrying in %.1fs", error, retry_at - now)
        if state is None:
            state = self._shipped_state(now, retry_at, error, None)
            if state is None:
                return None
        # keep answering with the model in hand; only the error and the next check change
        return replace(state, storage_error=error, failures=failures, next_check=retry_at)

    def _shipped_state(self, now: float, next_check: float, error: str | None,
                       generation: int | None) -> _State | None:
        try:
            shipped = LocalStore(self._shipped_dir)
            pointer, _ = read_pointer(shipped, self.name)
            if pointer is None:
                raise NotFound("shipped pointer")
            model = load_model(self.name, read_bundle(shipped, self.name, pointer.stable), "shipped",
                               self.settings.fast_predictor_max_rows)
        except (NotFound, CorruptBundle, ValueError) as exc:
            log.error("shipped model unusable: %s", exc)
            return None
        return _State(model, "shipped", None, 0.0, generation, next_check, now, storage_error=error,
                      served=(model.version,))


class Registry:
    """One lazily loaded ModelLoader per served model, sharing one store client."""

    def __init__(self, settings: Settings, store_factory: Callable[[], Store] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.names = settings.models
        factory = store_factory or (lambda: open_store(settings.model_store, settings.storage_timeout_s))
        lock, stores = threading.Lock(), []

        def shared_store() -> Store:
            with lock:
                if not stores:
                    stores.append(factory())
                return stores[0]

        self.loaders = {name: ModelLoader(settings, shared_store, clock, name) for name in self.names}

    def get(self, name: str) -> ModelLoader | None:
        """The loader of a served model, or None for a name this function does not serve."""
        return self.loaders.get(name)
