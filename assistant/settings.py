"""One settings object for every interface: environment variables (ASK_OOM_*) over a TOML file
(ASK_OOM_CONFIG, default ~/.config/ask-oom/config.toml) over defaults."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource


def _default_toml() -> Path:
    return Path(os.environ.get("ASK_OOM_CONFIG", Path.home() / ".config" / "ask-oom" / "config.toml"))


def _default_state_dir() -> Path:
    return Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "ask-oom"


class Settings(BaseSettings):
    """Everything configurable. Secrets are SecretStr so they never print in logs or reprs."""

    model_config = SettingsConfigDict(env_prefix="ASK_OOM_", extra="ignore")

    kb_dir: Path | None = Field(default=None, description="case YAML folder (default: the packaged kb/cases)")
    index_dir: Path | None = Field(default=None, description="where the retrieval index persists (default: beside the cases, else the state dir)")
    qdrant_url: str | None = Field(default=None, description="use a shared Qdrant server instead of the embedded index")
    qdrant_collection: str = "ask_oom_cases"
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama /v1)")
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = 30.0
    session_db: Path = Field(default_factory=lambda: _default_state_dir() / "sessions.sqlite3")
    session_ttl_days: float = 14.0
    gpu_margin: float = Field(default=0.90, gt=0.1, le=1.0, description="fraction of GPU memory a fixed run may use")
    max_upload_bytes: int = 16 * 1024 * 1024
    web_host: str = "127.0.0.1"
    web_port: int = 7860
    slack_bot_token: SecretStr | None = Field(default=None, validation_alias="SLACK_BOT_TOKEN")
    slack_app_token: SecretStr | None = Field(default=None, validation_alias="SLACK_APP_TOKEN")
    slack_signing_secret: SecretStr | None = Field(default=None, validation_alias="SLACK_SIGNING_SECRET")
    slack_api_url: str | None = Field(default=None, description="Slack Web API base URL (tests point it at a local server)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        toml = TomlConfigSettingsSource(settings_cls, toml_file=_default_toml())
        return (init_settings, env_settings, toml, file_secret_settings)


def load_settings(**overrides) -> Settings:
    return Settings(**overrides)
