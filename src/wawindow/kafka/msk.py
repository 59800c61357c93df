"""Amazon MSK with IAM: an OAUTHBEARER token provider for aiokafka, signed by AWS's own
signer package (the optional extra ``wawindow[msk]``: ``aws-msk-iam-sasl-signer-python``).

Set ``WAWINDOW_KAFKA_SECURITY_PROTOCOL=SASL_SSL``, ``WAWINDOW_KAFKA_SASL_MECHANISM=OAUTHBEARER``
and ``WAWINDOW_KAFKA_OAUTH_TOKEN_PROVIDER=wawindow.kafka.msk:MSKTokenProvider``; the region is
``AWS_REGION`` and the credentials are the pod's (IRSA) or the environment's, as for any AWS
SDK.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiokafka.abc import AbstractTokenProvider

try:
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
except ImportError as exc:  # the extra is not installed: say how, at start-up
    raise ImportError("the MSK IAM signer is not installed: pip install 'wawindow[msk]'") from exc


class MSKTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """A fresh MSK IAM token whenever aiokafka asks (they last 15 minutes)."""

    def __init__(self, region: str | None = None) -> None:
        self._region = region or os.environ.get("AWS_REGION") or os.environ["AWS_DEFAULT_REGION"]

    async def token(self) -> str:
        generated: Any = await asyncio.to_thread(
            MSKAuthTokenProvider.generate_auth_token, self._region
        )
        return str(generated[0])
