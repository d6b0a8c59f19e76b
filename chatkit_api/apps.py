from django.apps import AppConfig


class ChatkitApiConfig(AppConfig):
    name = "chatkit_api"
    verbose_name = "ChatKit transcripts"

    def ready(self) -> None:
        from chatkit_api import attachment_storage, checks  # noqa: F401 - registers the checks and receivers
