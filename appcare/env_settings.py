"""Settings from environment variables, one approach for every component: a pydantic
(v1) ``BaseSettings`` subclass whose fields name their variable (``Field(env=...)``).

* A variable that is unset or blank leaves the field's default.
* A value that cannot be used raises :class:`SettingsError` with one line per bad
  variable that names it and what it must be (``DESK_PORT must be a whole number
  (got 'vijftig')``); the start-up prints that line, not a traceback.
* ``read(environ=...)`` reads another mapping than ``os.environ`` (tests, credentials).
"""
from __future__ import annotations

import contextvars
import os
from typing import Any, Dict, Mapping, Optional, Type, TypeVar

from pydantic import BaseSettings, ValidationError

TRUE_VALUES = ("1", "true", "yes", "on", "ja")
FALSE_VALUES = ("0", "false", "no", "off", "nee")

_ENVIRON: contextvars.ContextVar[Optional[Mapping[str, str]]] = contextvars.ContextVar("environ", default=None)
S = TypeVar("S", bound="EnvSettings")


class SettingsError(ValueError):
    """A setting has a value that cannot be used (the message names the variable)."""


def flag(value: Any) -> Optional[bool]:
    """A yes/no value: 1/0, true/false, yes/no, on/off, ja/nee; ``None`` when blank."""
    if value is None or isinstance(value, bool):
        return value
    folded = str(value).strip().lower()
    if not folded:
        return None
    if folded in TRUE_VALUES:
        return True
    if folded in FALSE_VALUES:
        return False
    raise ValueError("not a yes/no value")


# What a value must be, by pydantic's error type (the rest: the validator's own words).
_MUST_BE = {
    "type_error.integer": "must be a whole number",
    "type_error.float": "must be a number",
    "value_error.number.not_finite_number": "must be a number",
    "type_error.bool": "must be 1 or 0",
}


class EnvSettings(BaseSettings):
    class Config:
        case_sensitive = True  # values as given: a secret keeps its exact characters
        # Messages for yes/no fields (validators raising ValueError on such a field).
        flag_fields: tuple = ()

        @classmethod
        def customise_sources(cls, init_settings, env_settings, file_secret_settings):
            return init_settings, _environment

    @classmethod
    def variable(cls, field_name: str) -> str:
        field = cls.__fields__[field_name]
        names = field.field_info.extra.get("env_names") or {field_name}
        return sorted(names)[0]

    @classmethod
    def read(cls: Type[S], environ: Optional[Mapping[str, str]] = None, **values: Any) -> S:
        """The settings from ``environ`` (default ``os.environ``); ``values`` win."""
        token = _ENVIRON.set(environ)
        try:
            return cls(**values)
        except ValidationError as exc:
            raise SettingsError(cls._explain(exc, environ)) from None
        finally:
            _ENVIRON.reset(token)

    @classmethod
    def _explain(cls, exc: ValidationError, environ: Optional[Mapping[str, str]]) -> str:
        env = os.environ if environ is None else environ
        lines = []
        for error in exc.errors():
            name = str(error["loc"][0])
            variable = cls.variable(name) if name in cls.__fields__ else name
            got = str(env.get(variable, "")).strip()[:40]
            if name in cls.__config__.flag_fields:
                must = "must be 1 or 0"
            else:
                must = _MUST_BE.get(error["type"]) or f"is not valid: {error['msg']}"
            lines.append(f"{variable} {must} (got {got!r})")
        return "; ".join(lines)


def _environment(settings: BaseSettings) -> Dict[str, Any]:
    """The fields' variables that are set and not blank."""
    env = _ENVIRON.get()
    env = os.environ if env is None else env
    values: Dict[str, Any] = {}
    for name, field in settings.__fields__.items():
        for variable in field.field_info.extra.get("env_names") or ():
            value = env.get(variable)
            if value is not None and str(value).strip():
                values[name] = value
                break
    return values
