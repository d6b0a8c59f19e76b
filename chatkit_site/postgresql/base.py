"""Django's PostgreSQL backend, with credentials from the DATABASE_SECRET_ARN secret.

RDS rotates a managed secret's password in place: the connections already open keep working,
and every new one is refused until the new password is read. So when a connection cannot be
opened, the secret is read again (at most once every FORCED_REFRESH_INTERVAL_SECONDS, so that a
database that is down costs few reads; see chatkit_site.aws_secrets), and if it changed the
connection is tried once more with it; a pool made with the old password is closed first.
"""

import logging
from typing import Any

from django.conf import settings
from django.db.backends.postgresql import base
from psycopg import OperationalError

from chatkit_site import aws_secrets

logger = logging.getLogger(__name__)


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        try:
            return super().get_new_connection(conn_params)
        except OperationalError:
            # libpq does not say why a connection failed (no SQLSTATE), and a pool only that
            # it timed out: any failure may be a rotated password.
            if not self._credentials_renewed():
                raise
        self.close_pool()
        return super().get_new_connection(self.get_connection_params())

    def _credentials_renewed(self) -> bool:
        arn = settings.DATABASE_SECRET_ARN
        try:
            if not aws_secrets.secret_refresh(arn):
                return False
            self.settings_dict.update(aws_secrets.database_credentials(arn, self.settings_dict))
        except aws_secrets.SecretUnavailable as exc:
            logger.warning("Could not read the database's credentials again: %s", exc)
            return False
        logger.info("The database's credentials changed in Secrets Manager; connecting with them")
        return True
