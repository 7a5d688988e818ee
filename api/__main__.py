"""``python -m api``: serve the API with uvicorn on the configured host and port."""

from __future__ import annotations

import uvicorn

from switchboard.settings import settings_or_exit


def main() -> None:
    settings = settings_or_exit()
    uvicorn.run(
        "api.main:create_app",
        factory=True,
        host=settings.api.host,
        port=settings.api.port,
        workers=settings.api.workers,
        timeout_keep_alive=settings.api.keep_alive_seconds,
        # The app believes X-Forwarded-* from API_TRUSTED_PROXIES only; uvicorn's own
        # handling would also trust FORWARDED_ALLOW_IPS.
        proxy_headers=False,
        log_config=None,
    )


if __name__ == "__main__":
    main()
